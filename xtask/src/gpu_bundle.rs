//! `cargo xtask gpu-bundle`: builds, here, what a GPU check needs on a machine that has
//! PyTorch but no Rust toolchain, for the PyTorch version installed there.
//!
//! The bundle is `gpu-bundle/metl-gpu-torch<VERSION>.tar.xz` (the `metl` binary, metl-models'
//! test binaries, the `models_speed` example, Omniglot's two zips and a `MANIFEST`; no
//! libtorch) beside `gpu-bundle/run.sh`, the one command the GPU machine runs
//! (`xtask/gpu-bundle/run.sh`: it loads the machine's own torch libraries through
//! `LD_LIBRARY_PATH` and writes a JSON summary). docs/performance.md, section GPU, says how.
//!
//! Each `tch` release binds one PyTorch version, so the bundle is built from a copy of the
//! committed workspace (`git archive HEAD`) whose `tch`/`torch-sys` requirement is rewritten
//! to the matching release, in a folder of its own with its own target folder (by default
//! `~/.cache/metl/gpu-bundle-<VERSION>`, kept for the next build), against the libtorch of
//! a virtualenv with that PyTorch (`~/.cache/metl/torch-<VERSION>`, installed from PyPI when
//! absent). The binaries keep an rpath to that build-time folder, which does not exist on
//! the GPU machine; `LD_LIBRARY_PATH` comes first anyway, since the linker writes it as
//! `RUNPATH`.

use crate::{
    cmd::{describe, fail, workspace_root, Failure, Result},
    libtorch::{self, Libtorch},
};
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

const USAGE: &str = "usage: cargo xtask gpu-bundle [--torch VERSION] [--tch VERSION] [--python PYTHON] \
[--out DIR] [--work DIR] [--no-data] [--check]";

/// The PyTorch version of the GPU machine lent to this project (2.11.0+cu130).
const DEFAULT_TORCH: &str = "2.11.0";

/// PyTorch versions and the `tch` release bound to each (the `TORCH_VERSION` that
/// `torch-sys`'s build script expects); `--tch` names another.
const TCH_FOR_TORCH: [(&str, &str); 3] = [("2.10.0", "0.23"), ("2.11.0", "0.24"), ("2.13.0", "0.26")];

/// What travels with a GPU check must stay below this.
const MAX_BUNDLE_BYTES: u64 = 60_000_000;

/// The options of `cargo xtask gpu-bundle`.
#[derive(Debug, PartialEq)]
struct Options {
    torch: String,
    tch: Option<String>,
    python: Option<PathBuf>,
    out: PathBuf,
    work: Option<PathBuf>,
    data: bool,
    check: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options {
        torch: DEFAULT_TORCH.into(),
        tch: None,
        python: None,
        out: workspace_root().join("gpu-bundle"),
        work: None,
        data: true,
        check: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| Failure(format!("{arg} needs a value\n{USAGE}")));
        match arg.as_str() {
            "--torch" => options.torch = value()?,
            "--tch" => options.tch = Some(value()?),
            "--python" => options.python = Some(value()?.into()),
            "--out" => options.out = workspace_root().join(value()?),
            "--work" => options.work = Some(workspace_root().join(value()?)),
            "--no-data" => options.data = false,
            "--check" => options.check = true,
            other => fail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    Ok(options)
}

/// The `tch` release bound to PyTorch `torch` (`2.11` or `2.11.0`).
fn tch_for_torch(torch: &str) -> Option<&'static str> {
    let full = if torch.matches('.').count() == 1 { format!("{torch}.0") } else { torch.to_owned() };
    TCH_FOR_TORCH.iter().find(|(t, _)| *t == full).map(|(_, tch)| *tch)
}

/// `manifest` (the workspace's Cargo.toml) with its `tch` and `torch-sys` requirements set
/// to `tch`.
fn pin_tch(manifest: &str, tch: &str) -> std::result::Result<String, String> {
    let mut found = [false; 2];
    let lines: Vec<String> = manifest
        .lines()
        .map(|line| {
            for (i, name) in ["tch", "torch-sys"].iter().enumerate() {
                if line.split('=').next().map(str::trim) == Some(name) && line.contains(" = \"") {
                    found[i] = true;
                    return format!("{name} = \"{tch}\"");
                }
            }
            line.to_owned()
        })
        .collect();
    if found != [true; 2] {
        return Err("Cargo.toml: no `tch = \"…\"` and `torch-sys = \"…\"` lines to rewrite".into());
    }
    Ok(lines.join("\n") + "\n")
}

/// The version of package `name` in a Cargo.lock.
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == format!("name = \"{name}\"") {
            let version = lines.next()?.trim().strip_prefix("version = \"")?;
            return Some(version.trim_end_matches('"').to_owned());
        }
    }
    None
}

/// An executable that cargo built, from its `compiler-artifact` JSON message.
#[derive(Debug, PartialEq)]
struct Artifact {
    /// The target's first kind: `bin`, `example`, `test`, `lib`.
    kind: String,
    name: String,
    executable: PathBuf,
}

/// The JSON string that follows the first `prefix` in `json` (cargo's messages are one
/// object a line), e.g. `"name":"` or `"kind":["`.
fn json_string(json: &str, prefix: &str) -> Option<String> {
    let start = json.find(prefix)? + prefix.len();
    let mut value = String::new();
    let mut chars = json[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(value),
            '\\' => value.push(chars.next()?),
            c => value.push(c),
        }
    }
    None
}

fn parse_artifact(line: &str) -> Option<Artifact> {
    if !line.starts_with("{\"reason\":\"compiler-artifact\"") {
        return None;
    }
    let executable = json_string(line, r#""executable":""#)?;
    let target = &line[line.find(r#""target":{"#)?..];
    let (kind, name) = (json_string(target, r#""kind":[""#)?, json_string(target, r#""name":""#)?);
    Some(Artifact { kind, name, executable: executable.into() })
}

/// Runs cargo in `src` with `env`, returning the executables it built.
fn cargo_executables(src: &Path, env: &[(&str, &std::ffi::OsStr)], args: &[&str]) -> Result<Vec<Artifact>> {
    let mut cmd = crate::cmd::cargo();
    cmd.current_dir(src).args(args).arg("--message-format=json-render-diagnostics");
    cmd.envs(env.iter().copied()).env_remove("LIBTORCH_INCLUDE").env_remove("RUSTFLAGS");
    eprintln!("$ {}", describe(&cmd));
    let out = cmd.stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        fail!("`{}` failed ({})", describe(&cmd), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().filter_map(parse_artifact).collect())
}

/// The standard output of `cmd` as trimmed text, failing unless it succeeds.
fn text_of(cmd: &mut Command) -> Result<String> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        fail!("`{}` failed: {}", describe(cmd), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The files and symbolic links under `root`, relative to it.
fn tree(root: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if fs::symlink_metadata(&path)?.is_dir() {
                dirs.push(path);
            } else {
                files.push(path.strip_prefix(root).expect("under root").to_owned());
            }
        }
    }
    Ok(files)
}

/// Makes `dst` hold what `src` holds, writing only what differs (cargo rebuilds what has a
/// newer modification time) and removing what `src` lacks.
fn sync(src: &Path, dst: &Path) -> Result {
    let wanted = tree(src)?;
    for rel in &wanted {
        let (from, to) = (src.join(rel), dst.join(rel));
        let link = fs::read_link(&from).ok();
        let same = match &link {
            Some(target) => fs::read_link(&to).ok().as_ref() == Some(target),
            None => {
                fs::symlink_metadata(&to).is_ok_and(|m| m.is_file()) && fs::read(&from)? == fs::read(&to)?
            }
        };
        if same {
            continue;
        }
        fs::create_dir_all(to.parent().expect("a file has a folder"))?;
        if fs::symlink_metadata(&to).is_ok() {
            fs::remove_file(&to)?;
        }
        match link {
            Some(target) => std::os::unix::fs::symlink(target, &to)?,
            None => drop(fs::copy(&from, &to)?),
        }
    }
    if dst.exists() {
        for rel in tree(dst)?.into_iter().filter(|rel| !wanted.contains(rel)) {
            fs::remove_file(dst.join(rel))?;
        }
    }
    Ok(())
}

/// The committed workspace (`git archive HEAD`) in `src`, with `tch`/`torch-sys` pinned to `tch`.
fn checkout(work: &Path, src: &Path, tch: &str) -> Result {
    let incoming = work.join("incoming");
    if incoming.exists() {
        fs::remove_dir_all(&incoming)?;
    }
    fs::create_dir_all(&incoming)?;
    let mut git = Command::new("git");
    git.current_dir(workspace_root()).args(["archive", "--format=tar", "HEAD"]).stdout(Stdio::piped());
    let mut git = git.spawn().map_err(|e| Failure(format!("cannot start git: {e}")))?;
    let status = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(&incoming)
        .stdin(git.stdout.take().expect("piped"))
        .status()
        .map_err(|e| Failure(format!("cannot start tar: {e}")))?;
    if !git.wait()?.success() || !status.success() {
        fail!("`git archive HEAD | tar -x -C {}` failed", incoming.display());
    }
    let manifest = incoming.join("Cargo.toml");
    fs::write(&manifest, pin_tch(&fs::read_to_string(&manifest)?, tch)?)?;
    sync(&incoming, src)?;
    fs::remove_dir_all(&incoming)?;
    Ok(())
}

/// The libtorch to build against: `--python`'s torch, else the virtualenv
/// `~/.cache/metl/torch-<VERSION>`, installed from PyPI when it has none.
fn torch_for(options: &Options) -> Result<Libtorch> {
    if let Some(python) = &options.python {
        return libtorch::inspect(python, &options.torch);
    }
    let venv = libtorch::cache_dir()?.join("metl").join(format!("torch-{}", options.torch));
    let python = venv.join("bin/python");
    match python.exists().then(|| libtorch::inspect(&python, &options.torch)) {
        Some(Ok(torch)) => Ok(torch),
        _ => libtorch::install_torch(&venv, &options.torch, &[&format!("torch=={}", options.torch)]),
    }
}

/// Copies `from` to `to`, making the folder.
fn put(from: &Path, to: &Path) -> Result {
    fs::create_dir_all(to.parent().expect("a file has a folder"))?;
    fs::copy(from, to)
        .map_err(|e| Failure(format!("copying {} to {}: {e}", from.display(), to.display())))?;
    Ok(())
}

/// `cargo xtask gpu-bundle [...]`.
pub fn run(args: &[String]) -> Result {
    let options = parse(args)?;
    let started = Instant::now();
    let Some(tch) = options.tch.as_deref().or_else(|| tch_for_torch(&options.torch)) else {
        let known: Vec<String> = TCH_FOR_TORCH.iter().map(|(t, c)| format!("{t} (tch {c})")).collect();
        fail!(
            "no tch release is known for torch {}: give --tch VERSION (known: {})",
            options.torch,
            known.join(", ")
        );
    };
    let torch = torch_for(&options)?;
    let work = match &options.work {
        Some(dir) => dir.clone(),
        None => libtorch::cache_dir()?.join("metl").join(format!("gpu-bundle-{}", options.torch)),
    };
    let src = work.join("src");
    checkout(&work, &src, tch)?;
    // The path the binaries' RUNPATH names: this machine's only, unlike the GPU machine's torch.
    let link = work.join("libtorch");
    if fs::symlink_metadata(&link).is_ok() {
        fs::remove_file(&link)?;
    }
    std::os::unix::fs::symlink(&torch.root, &link)?;
    let target = work.join("target");
    let env: [(&str, &std::ffi::OsStr); 6] = [
        ("LIBTORCH", link.as_os_str()),
        ("LIBTORCH_CXX11_ABI", torch.cxx11_abi.as_ref()),
        ("CARGO_TARGET_DIR", target.as_os_str()),
        // One GPU: no NCCL (its headers are not among the wheel's).
        ("METL_DIST_NCCL", "0".as_ref()),
        ("CARGO_PROFILE_RELEASE_DEBUG", "false".as_ref()),
        ("CARGO_PROFILE_RELEASE_STRIP", "symbols".as_ref()),
    ];
    let mut built = cargo_executables(
        &src,
        &env,
        &[
            "build",
            "--release",
            "-p",
            "metl-runner",
            "--bin",
            "metl",
            "-p",
            "metl-benches",
            "--example",
            "models_speed",
        ],
    )?;
    // metl-data's `images` as in the workspace's own test run (`cargo test --workspace`
    // unifies it in from metl-runner); metl-data needs it since commit f4760a3.
    let tests =
        ["test", "--release", "-p", "metl-models", "--features", "metl-data/images", "--tests", "--no-run"];
    built.extend(cargo_executables(&src, &env, &tests)?);

    let name = format!("metl-gpu-torch{}", options.torch);
    let stage = work.join("stage");
    if stage.exists() {
        fs::remove_dir_all(&stage)?;
    }
    let bundle = stage.join(&name);
    for artifact in &built {
        let folder = match artifact.kind.as_str() {
            "bin" => "bin",
            "example" => "examples",
            _ => "tests",
        };
        put(&artifact.executable, &bundle.join(folder).join(&artifact.name))?;
    }
    let omniglot = std::env::var_os("METL_OMNIGLOT_DIR")
        .map_or_else(|| workspace_root().join("../shared/data/omniglot"), PathBuf::from);
    let zips = ["images_background.zip", "images_evaluation.zip"];
    let data = options.data && zips.iter().all(|z| omniglot.join(z).is_file());
    if data {
        for zip in zips {
            put(&omniglot.join(zip), &bundle.join("data/omniglot").join(zip))?;
        }
    } else if options.data {
        eprintln!(
            "warning: no Omniglot zips in {}: the bundle's Omniglot benchmarks will be skipped",
            omniglot.display()
        );
    }
    let git = |args: &[&str]| text_of(Command::new("git").current_dir(workspace_root()).args(args));
    let manifest = format!(
        "torch={}\ntch={}\nmetl_revision={}\nmetl_commit_date={}\nrustc={}\ncxx11_abi={}\nomniglot={}\n",
        options.torch,
        locked_version(&fs::read_to_string(src.join("Cargo.lock"))?, "tch").unwrap_or_else(|| tch.into()),
        git(&["rev-parse", "--short=12", "HEAD"])?,
        git(&["log", "-1", "--format=%cI"])?,
        text_of(Command::new("rustc").arg("--version"))?,
        torch.cxx11_abi,
        if data { "bundled" } else { "absent" },
    );
    fs::write(bundle.join("MANIFEST"), manifest)?;

    fs::create_dir_all(&options.out)?;
    for old in fs::read_dir(&options.out)?.flatten() {
        if old.file_name().to_string_lossy().starts_with("metl-gpu-torch") {
            fs::remove_file(old.path())?;
        }
    }
    let archive = options.out.join(format!("{name}.tar.xz"));
    let mut tar = Command::new("tar");
    tar.env("XZ_OPT", "-9").arg("-cJf").arg(&archive).arg("-C").arg(&stage).arg(&name);
    crate::cmd::run(tar, &Vec::new())?;
    let script = options.out.join("run.sh");
    put(&workspace_root().join("xtask/gpu-bundle/run.sh"), &script)?;
    fs::remove_dir_all(&stage)?;
    let size = fs::metadata(&archive)?.len() + fs::metadata(&script)?.len();
    let shown = |p: &Path| p.strip_prefix(workspace_root()).unwrap_or(p).display().to_string();
    eprintln!(
        "gpu-bundle: {} and {}: {:.1} MB, tch {tch} for torch {}, built in {:.0} s",
        shown(&archive),
        shown(&script),
        size as f64 / 1e6,
        options.torch,
        started.elapsed().as_secs_f64()
    );
    if size > MAX_BUNDLE_BYTES {
        fail!("the bundle is {size} bytes, above the {MAX_BUNDLE_BYTES} that may travel");
    }
    eprintln!(
        "gpu-bundle: on the GPU machine, with PyTorch {} as python3: bash {} OUT_DIR",
        options.torch,
        shown(&script)
    );
    if options.check {
        let python =
            torch.python.as_ref().ok_or_else(|| Failure("--check needs the torch's python".into()))?;
        let mut check = Command::new("bash");
        check.arg(&script).args(["--cpu", "--quick", "--python"]).arg(python).arg(work.join("check"));
        crate::cmd::run(check, &Vec::new())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_the_tch_of_each_torch() {
        assert_eq!(tch_for_torch("2.11.0"), Some("0.24"));
        assert_eq!(tch_for_torch("2.11"), Some("0.24"));
        assert_eq!(tch_for_torch("2.13.0"), Some("0.26"));
        assert_eq!(tch_for_torch("1.0.0"), None);
        // The workspace's own pair is in the table.
        let workspace = fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
        let tch = workspace.lines().find_map(|l| l.strip_prefix("tch = \"")).unwrap().trim_end_matches('"');
        assert_eq!(tch_for_torch(libtorch::TORCH_VERSION), Some(tch));
    }

    #[test]
    fn pins_tch_and_torch_sys_only() {
        let manifest = "[workspace.dependencies]\ntch = \"0.26\"\ntorch-sys = \"0.26\"\ntch-extra = \"1\"\n";
        assert_eq!(
            pin_tch(manifest, "0.24").unwrap(),
            "[workspace.dependencies]\ntch = \"0.24\"\ntorch-sys = \"0.24\"\ntch-extra = \"1\"\n"
        );
        assert!(pin_tch("[workspace.dependencies]\ntch = \"0.26\"\n", "0.24").is_err());
        let lock = "[[package]]\nname = \"tch\"\nversion = \"0.24.0\"\n";
        assert_eq!(locked_version(lock, "tch").as_deref(), Some("0.24.0"));
        assert_eq!(locked_version(lock, "torch-sys"), None);
    }

    #[test]
    fn reads_cargo_artifact_messages() {
        let test = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/crates/metl-models#0.1.0","manifest_path":"/w/Cargo.toml","target":{"kind":["test"],"crate_types":["bin"],"name":"devices","src_path":"/w/tests/devices.rs"},"profile":{},"features":[],"filenames":["/t/deps/devices-1"],"executable":"/t/deps/devices-1","fresh":true}"#;
        let expected =
            Artifact { kind: "test".into(), name: "devices".into(), executable: "/t/deps/devices-1".into() };
        assert_eq!(parse_artifact(test), Some(expected));
        let build_script = test.replace(r#""executable":"/t/deps/devices-1""#, r#""executable":null"#);
        assert_eq!(parse_artifact(&build_script), None);
        assert_eq!(parse_artifact(r#"{"reason":"build-finished","success":true}"#), None);
        assert_eq!(json_string(r#"{"a":"x\"y\\z"}"#, r#""a":""#).as_deref(), Some(r#"x"y\z"#));
    }

    #[test]
    fn sync_writes_only_changes_and_removes_the_rest() {
        let dir = std::env::temp_dir().join(format!("xtask-sync-{}", std::process::id()));
        let (src, dst) = (dir.join("src"), dir.join("dst"));
        fs::create_dir_all(src.join("a")).unwrap();
        fs::write(src.join("a/same.rs"), "same").unwrap();
        fs::write(src.join("changed.rs"), "new").unwrap();
        std::os::unix::fs::symlink("a/same.rs", src.join("link")).unwrap();
        fs::create_dir_all(dst.join("a")).unwrap();
        fs::write(dst.join("a/same.rs"), "same").unwrap();
        fs::write(dst.join("changed.rs"), "old").unwrap();
        fs::write(dst.join("stale.rs"), "gone").unwrap();
        let before = fs::metadata(dst.join("a/same.rs")).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        sync(&src, &dst).unwrap();
        assert_eq!(fs::metadata(dst.join("a/same.rs")).unwrap().modified().unwrap(), before);
        assert_eq!(fs::read_to_string(dst.join("changed.rs")).unwrap(), "new");
        assert_eq!(fs::read_link(dst.join("link")).unwrap(), PathBuf::from("a/same.rs"));
        assert!(!dst.join("stale.rs").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parses_options() {
        let args: Vec<String> = ["--torch", "2.10.0", "--no-data", "--check"].map(String::from).to_vec();
        let options = parse(&args).unwrap();
        assert_eq!((options.torch.as_str(), options.data, options.check), ("2.10.0", false, true));
        assert!(parse(&["--torch".into()]).is_err());
        assert!(parse(&["--bogus".into()]).is_err());
    }
}
