//! `cargo xtask setup`: makes libtorch 2.13.0 available to `tch` 0.26.
//!
//! - `LIBTORCH` set: that libtorch is used and nothing is installed.
//! - Otherwise a virtualenv at `$XDG_CACHE_HOME/metl/torch-2.13.0` (else
//!   `~/.cache/metl/torch-2.13.0`) gets PyPI's `torch==2.13.0` wheel, which carries
//!   libtorch (and, through it, CUDA). A stamp file records the result, so a second run
//!   installs nothing, starts no Python and needs no network.

use crate::cmd::{fail, Env, Failure, Result};
use std::{
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// The PyTorch version `tch` 0.26 is built against.
pub const TORCH_VERSION: &str = "2.13.0";
/// What the virtualenv gets: torch, plus what the Python-side checks and the PyTorch
/// reference scripts import.
pub const PIP_PACKAGES: &[&str] = &["torch==2.13.0", "numpy", "safetensors", "pillow"];
const STAMP: &str = "metl-libtorch.txt";

/// A usable libtorch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Libtorch {
    /// The folder with `include/` and `lib/` (what `LIBTORCH` points at).
    pub root: PathBuf,
    /// `1` or `0`: the C++ ABI libtorch was built with.
    pub cxx11_abi: String,
    /// The virtualenv's python, when metl installed libtorch (for the Python checks and
    /// the PyTorch reference scripts).
    pub python: Option<PathBuf>,
}

impl Libtorch {
    /// libtorch's shared-library folder.
    pub fn lib_dir(&self) -> PathBuf {
        self.root.join("lib")
    }

    /// The environment with which plain `cargo build`/`cargo test` work.
    pub fn env(&self) -> Env {
        let mut env: Env = vec![
            ("LIBTORCH".into(), self.root.clone().into()),
            ("LIBTORCH_CXX11_ABI".into(), self.cxx11_abi.clone().into()),
        ];
        // Doctests are linked by rustdoc, which build-script link arguments do not reach.
        let mut rustdoc = std::env::var_os("RUSTDOCFLAGS").unwrap_or_default();
        let rpath = format!("-C link-arg=-Wl,-rpath,{}", self.lib_dir().display());
        if !rustdoc.to_string_lossy().contains(&rpath) {
            if !rustdoc.is_empty() {
                rustdoc.push(" ");
            }
            rustdoc.push(&rpath);
        }
        env.push(("RUSTDOCFLAGS".into(), rustdoc));
        if let Some(python) = &self.python {
            env.push(("METL_PYTHON".into(), python.clone().into()));
        }
        env
    }
}

/// The user's cache directory: `$XDG_CACHE_HOME`, else `~/.cache`.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".cache")),
        None => fail!("neither XDG_CACHE_HOME nor HOME is set: cannot choose where to install libtorch"),
    }
}

/// The virtualenv metl installs torch into.
pub fn venv_dir() -> Result<PathBuf> {
    Ok(cache_dir()?.join("metl").join(format!("torch-{TORCH_VERSION}")))
}

/// Finds or installs libtorch; `verbose` prints what happens.
pub fn ensure(verbose: bool) -> Result<Libtorch> {
    if let Some(root) = std::env::var_os("LIBTORCH").filter(|v| !v.is_empty()) {
        let torch = from_user(PathBuf::from(root))?;
        if verbose {
            eprintln!("using LIBTORCH={} (set by you; nothing installed)", torch.root.display());
        }
        return Ok(torch);
    }
    let venv = venv_dir()?;
    if let Some(torch) = read_stamp(&venv) {
        if verbose {
            eprintln!("libtorch {TORCH_VERSION} is ready in {}", torch.root.display());
        }
        return Ok(torch);
    }
    install(&venv)
}

/// The Python with torch 2.13.0 for the reference scripts and the Python-side checks:
/// `$METL_PYTHON`, else the virtualenv's when `cargo xtask setup` made one.
pub fn python(torch: &Libtorch) -> Option<PathBuf> {
    std::env::var_os("METL_PYTHON")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| torch.python.clone())
        .or_else(|| venv_dir().ok().and_then(|v| read_stamp(&v)).and_then(|t| t.python))
}

fn has_libtorch(lib: &Path) -> bool {
    ["libtorch_cpu.so", "libtorch_cpu.dylib", "torch_cpu.dll"].iter().any(|f| lib.join(f).exists())
}

fn from_user(root: PathBuf) -> Result<Libtorch> {
    if !has_libtorch(&root.join("lib")) {
        fail!(
            "LIBTORCH={} has no lib/libtorch_cpu.so: point it at an unpacked libtorch {TORCH_VERSION} \
             (the folder holding include/ and lib/), or unset it to let `cargo xtask setup` install one",
            root.display()
        );
    }
    if let Ok(version) = fs::read_to_string(root.join("build-version")) {
        if !version.trim().starts_with(TORCH_VERSION) {
            eprintln!(
                "warning: LIBTORCH holds libtorch {}, tch 0.26 expects {TORCH_VERSION}",
                version.trim()
            );
        }
    }
    let cxx11_abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    Ok(Libtorch { root, cxx11_abi, python: None })
}

fn read_stamp(venv: &Path) -> Option<Libtorch> {
    let text = fs::read_to_string(venv.join(STAMP)).ok()?;
    let field = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)).map(str::to_owned);
    if field("version=")? != TORCH_VERSION {
        return None;
    }
    let torch = Libtorch {
        root: PathBuf::from(field("libtorch=")?),
        cxx11_abi: field("cxx11_abi=")?,
        python: Some(PathBuf::from(field("python=")?)),
    };
    (has_libtorch(&torch.lib_dir()) && torch.python.as_ref().is_some_and(|p| p.exists())).then_some(torch)
}

fn write_stamp(venv: &Path, torch: &Libtorch) -> Result {
    let python = torch.python.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    let text = format!(
        "version={TORCH_VERSION}\nlibtorch={}\ncxx11_abi={}\npython={python}\n",
        torch.root.display(),
        torch.cxx11_abi
    );
    let tmp = venv.join(format!("{STAMP}.tmp"));
    fs::write(&tmp, text)?;
    fs::rename(&tmp, venv.join(STAMP))?;
    Ok(())
}

const MANUAL: &str = "Alternatively, download libtorch 2.13.0 for your platform from https://pytorch.org \
(C++/Java, LibTorch), unpack it, and set LIBTORCH to the unpacked folder (the one holding include/ and lib/).";

fn output_of(cmd: &mut Command) -> std::io::Result<std::process::Output> {
    cmd.stdin(Stdio::null()).output()
}

fn install(venv: &Path) -> Result<Libtorch> {
    let torch = install_torch(venv, TORCH_VERSION, PIP_PACKAGES)?;
    write_stamp(venv, &torch)?;
    eprintln!("libtorch {TORCH_VERSION} is ready in {}", torch.root.display());
    Ok(torch)
}

/// Creates the virtualenv `venv` (unless it exists) and pip-installs `packages` into it,
/// which must bring torch `version`.
pub fn install_torch(venv: &Path, version: &str, packages: &[&str]) -> Result<Libtorch> {
    let python3 = std::env::var_os("METL_SETUP_PYTHON").unwrap_or_else(|| OsString::from("python3"));
    let python3 = PathBuf::from(python3);
    match output_of(Command::new(&python3).arg("--version")) {
        Ok(out) if out.status.success() => {}
        _ => fail!(
            "`{}` not found: the one-time libtorch download needs Python 3 with the venv module \
             (Debian/Ubuntu: apt install python3 python3-venv). {MANUAL}",
            python3.display()
        ),
    }
    let probe = output_of(Command::new(&python3).args(["-c", "import venv, ensurepip"]))?;
    if !probe.status.success() {
        fail!(
            "`{}` has no working venv module (import venv, ensurepip failed): \
             install it (Debian/Ubuntu: apt install python3-venv). {MANUAL}",
            python3.display()
        );
    }
    let python = venv.join("bin").join("python");
    if !python.exists() {
        eprintln!("creating a virtualenv in {}", venv.display());
        let out = output_of(Command::new(&python3).arg("-m").arg("venv").arg(venv))?;
        if !out.status.success() {
            fail!("`{} -m venv {}` failed:\n{}\n{MANUAL}", python3.display(), venv.display(), tail(&out, 20));
        }
    }
    eprintln!("installing {} into {} (a few GB, one time only)", packages.join(" "), venv.display());
    let out = output_of(
        Command::new(&python).args(["-m", "pip", "install", "--disable-pip-version-check"]).args(packages),
    )?;
    if !out.status.success() {
        fail!("pip install failed; the end of its output:\n{}\n{MANUAL}", tail(&out, 25));
    }
    inspect(&python, version)
}

/// Asks `python`'s torch for its version (which must be `expected`), location and ABI.
pub fn inspect(python: &Path, expected: &str) -> Result<Libtorch> {
    let script = "import os, torch\nprint(torch.__version__)\nprint(os.path.dirname(torch.__file__))\nprint(int(torch._C._GLIBCXX_USE_CXX11_ABI))";
    let out = output_of(Command::new(python).args(["-c", script]))?;
    if !out.status.success() {
        fail!("the installed torch does not import:\n{}\n{MANUAL}", tail(&out, 20));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let [version, root, abi] = lines[..] else {
        return Err(Failure(format!("unexpected output from torch: {text}")));
    };
    if version.split('+').next() != Some(expected) {
        fail!(
            "{} has torch {version}, expected {expected} (delete a virtualenv of metl's to reinstall it)",
            python.display()
        );
    }
    let torch =
        Libtorch { root: PathBuf::from(root), cxx11_abi: abi.to_owned(), python: Some(python.to_owned()) };
    if !has_libtorch(&torch.lib_dir()) {
        fail!("torch {version} at {root} ships no lib/libtorch_cpu.so");
    }
    Ok(torch)
}

fn tail(out: &std::process::Output, lines: usize) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_and_rejects_other_versions() {
        let dir = std::env::temp_dir().join(format!("xtask-stamp-{}", std::process::id()));
        let root = dir.join("torch");
        fs::create_dir_all(root.join("lib")).unwrap();
        fs::write(root.join("lib/libtorch_cpu.so"), b"").unwrap();
        let python = dir.join("python");
        fs::write(&python, b"").unwrap();
        let torch = Libtorch { root, cxx11_abi: "1".into(), python: Some(python) };
        write_stamp(&dir, &torch).unwrap();
        assert_eq!(read_stamp(&dir), Some(torch.clone()));
        let text = fs::read_to_string(dir.join(STAMP)).unwrap().replace(TORCH_VERSION, "2.0.0");
        fs::write(dir.join(STAMP), text).unwrap();
        assert_eq!(read_stamp(&dir), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn env_exports_libtorch_and_doctest_rpath() {
        let torch = Libtorch { root: "/opt/lt".into(), cxx11_abi: "1".into(), python: None };
        let env = torch.env();
        assert!(env.contains(&("LIBTORCH".into(), "/opt/lt".into())));
        let rustdoc = env.iter().find(|(k, _)| k == "RUSTDOCFLAGS").unwrap();
        assert!(rustdoc.1.to_string_lossy().contains("-Wl,-rpath,/opt/lt/lib"));
    }
}
