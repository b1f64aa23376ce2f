//! Where Omniglot's PNGs come from: the official zips or their extracted folders, both laid
//! out `images_background/<Alphabet>/characterNN/<drawing>.png` (and `images_evaluation`).

use crate::error::{DataError, Result};
use rayon::prelude::*;
use std::{
    collections::BTreeMap,
    fs,
    io::{Cursor, Read},
    path::{Path, PathBuf},
    time::UNIX_EPOCH,
};

/// The largest PNG we accept inside the zip (Omniglot's are ~300 bytes).
const MAX_ENTRY_BYTES: u64 = 16 << 20;

/// One of the two Omniglot image sets.
#[derive(Debug, Clone)]
pub(crate) enum SetSource {
    /// `root/<set>.zip`.
    Zip(PathBuf),
    /// `root/<set>/`.
    Folder(PathBuf),
}

/// One character class: its alphabet, name and image locations (sorted by file name).
#[derive(Debug)]
pub(crate) struct SourceClass {
    pub alphabet: String,
    pub character: String,
    pub files: Vec<Locator>,
}

/// Where one PNG is: a zip entry index or a file; `path` names it in errors.
#[derive(Debug)]
pub(crate) struct Locator {
    pub path: PathBuf,
    pub zip_index: Option<usize>,
}

/// Names that archivers and file browsers add and that we skip.
fn is_junk(name: &str) -> bool {
    name.starts_with('.') || name == "Thumbs.db" || name == "__MACOSX"
}

impl SetSource {
    /// Finds set `name` under `root`: the folder if present, else the zip.
    pub fn locate(root: &Path, name: &str) -> Result<Self> {
        if !root.exists() {
            return Err(DataError::NotFound {
                path: root.to_owned(),
                what: format!("the Omniglot folder, with {name}.zip or {name}/"),
            });
        }
        let folder = root.join(name);
        let zip = root.join(format!("{name}.zip"));
        if folder.is_dir() {
            Ok(SetSource::Folder(folder))
        } else if zip.is_file() {
            Ok(SetSource::Zip(zip))
        } else {
            Err(DataError::NotFound {
                path: zip,
                what: format!("{name}.zip or the extracted folder {name}/"),
            })
        }
    }

    /// Size and modification time of the zip, or file count, total size and latest
    /// modification time of the folder's files: what the decoded cache is keyed by.
    pub fn fingerprint(&self) -> Result<String> {
        fn stamp(path: &Path) -> Result<(u64, u128)> {
            let meta = fs::metadata(path).map_err(|e| DataError::io(path, e))?;
            let modified = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok());
            Ok((meta.len(), modified.map_or(0, |d| d.as_nanos())))
        }
        match self {
            SetSource::Zip(path) => {
                let (size, mtime) = stamp(path)?;
                Ok(format!("zip:{}:{size}:{mtime}", canonical(path).display()))
            }
            SetSource::Folder(path) => {
                let (mut count, mut size, mut latest) = (0u64, 0u64, 0u128);
                for class in self.list()?.classes {
                    for file in class.files {
                        let (s, m) = stamp(&file.path)?;
                        count += 1;
                        size += s;
                        latest = latest.max(m);
                    }
                }
                Ok(format!("dir:{}:{count}:{size}:{latest}", canonical(path).display()))
            }
        }
    }

    /// Lists the set's classes in order (alphabets, then characters, by name), checking
    /// the layout.
    pub fn list(&self) -> Result<Listing> {
        match self {
            SetSource::Zip(path) => {
                let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
                let classes = list_zip(path, &open_zip(path, &bytes)?)?;
                Ok(Listing { classes, zip: Some((path.clone(), bytes)) })
            }
            SetSource::Folder(path) => Ok(Listing { classes: list_folder(path)?, zip: None }),
        }
    }
}

/// The classes of a set and, for a zip, the archive's bytes.
#[derive(Debug)]
pub(crate) struct Listing {
    pub classes: Vec<SourceClass>,
    zip: Option<(PathBuf, Vec<u8>)>,
}

impl Listing {
    /// Reads every class's PNGs and maps `decode(path, bytes)` over them in parallel,
    /// returning the results class by class, in file order.
    pub fn read_all<T: Send>(
        &self,
        decode: impl Fn(&Path, &[u8]) -> Result<T> + Sync,
    ) -> Result<Vec<Vec<T>>> {
        let files: Vec<&Locator> = self.classes.iter().flat_map(|c| &c.files).collect();
        let decoded: Vec<T> = match &self.zip {
            Some((path, bytes)) => {
                let archive = open_zip(path, bytes)?;
                files
                    .par_iter()
                    .map_init(
                        || archive.clone(),
                        |archive, file| decode(&file.path, &read_entry(archive, file)?),
                    )
                    .collect::<Result<_>>()?
            }
            None => files
                .par_iter()
                .map(|file| {
                    let bytes = fs::read(&file.path).map_err(|e| DataError::io(&file.path, e))?;
                    decode(&file.path, &bytes)
                })
                .collect::<Result<_>>()?,
        };
        let mut decoded = decoded.into_iter();
        Ok(self.classes.iter().map(|c| decoded.by_ref().take(c.files.len()).collect()).collect())
    }
}

type Archive<'a> = zip::ZipArchive<Cursor<&'a [u8]>>;

fn open_zip<'a>(path: &Path, bytes: &'a [u8]) -> Result<Archive<'a>> {
    zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| DataError::Archive { path: path.to_owned(), reason: e.to_string() })
}

fn read_entry(archive: &mut Archive<'_>, file: &Locator) -> Result<Vec<u8>> {
    let index = file.zip_index.expect("zip locators carry an index");
    let entry_err =
        |e: &dyn std::fmt::Display| DataError::Archive { path: file.path.clone(), reason: e.to_string() };
    let entry = archive.by_index(index).map_err(|e| entry_err(&e))?;
    let mut buf = Vec::with_capacity(entry.size().min(MAX_ENTRY_BYTES) as usize);
    entry.take(MAX_ENTRY_BYTES + 1).read_to_end(&mut buf).map_err(|e| entry_err(&e))?;
    if buf.len() as u64 > MAX_ENTRY_BYTES {
        return Err(entry_err(&format!("entry larger than {MAX_ENTRY_BYTES} bytes")));
    }
    Ok(buf)
}

fn canonical(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

type Tree = BTreeMap<String, BTreeMap<String, Vec<(String, Locator)>>>;

/// Lists a zip, checking every entry name against `<set>/<alphabet>/<character>/<file>.png`.
fn list_zip(path: &Path, archive: &Archive<'_>) -> Result<Vec<SourceClass>> {
    let set = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
    let mut archive = archive.clone();
    let mut tree = Tree::new();
    for index in 0..archive.len() {
        let entry = archive.by_index_raw(index).map_err(|e| DataError::Archive {
            path: path.to_owned(),
            reason: format!("entry {index}: {e}"),
        })?;
        let name = entry.name().to_owned();
        let entry_path = path.join(&name);
        let parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty()).collect();
        let outside = || {
            DataError::layout(
                &entry_path,
                format!("zip entry outside the layout {set}/<alphabet>/<character>/<drawing>.png"),
            )
        };
        if parts.iter().any(|p| *p == ".." || *p == "." || p.contains('\\')) || name.starts_with('/') {
            return Err(outside());
        }
        if parts.iter().any(|p| is_junk(p)) {
            continue;
        }
        if parts.first() != Some(&set.as_str()) {
            return Err(outside());
        }
        if entry.is_dir() {
            match parts[..] {
                [_] => {}
                [_, alphabet] => {
                    tree.entry(alphabet.to_owned()).or_default();
                }
                [_, alphabet, character] => {
                    tree.entry(alphabet.to_owned()).or_default().entry(character.to_owned()).or_default();
                }
                _ => return Err(outside()),
            }
            continue;
        }
        match parts[..] {
            [_, alphabet, character, file] if file.to_ascii_lowercase().ends_with(".png") => {
                let locator = Locator { path: entry_path, zip_index: Some(index) };
                let class =
                    tree.entry(alphabet.to_owned()).or_default().entry(character.to_owned()).or_default();
                class.push((file.to_owned(), locator));
            }
            _ => return Err(outside()),
        }
    }
    flatten(&path.join(&set), tree)
}

fn sorted_dir(path: &Path) -> Result<Vec<(String, PathBuf, bool)>> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(path).map_err(|e| DataError::io(path, e))? {
        let entry = entry.map_err(|e| DataError::io(path, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_junk(&name) {
            continue;
        }
        let is_dir = entry.file_type().map_err(|e| DataError::io(entry.path(), e))?.is_dir();
        entries.push((name, entry.path(), is_dir));
    }
    entries.sort();
    Ok(entries)
}

fn list_folder(path: &Path) -> Result<Vec<SourceClass>> {
    let mut tree = Tree::new();
    for (alphabet, alphabet_path, is_dir) in sorted_dir(path)? {
        if !is_dir {
            return Err(DataError::layout(alphabet_path, "expected an alphabet folder, found a file"));
        }
        let characters = tree.entry(alphabet).or_default();
        for (character, character_path, is_dir) in sorted_dir(&alphabet_path)? {
            if !is_dir {
                return Err(DataError::layout(character_path, "expected a character folder, found a file"));
            }
            let files = characters.entry(character).or_default();
            for (file, file_path, is_dir) in sorted_dir(&character_path)? {
                if is_dir || !file.to_ascii_lowercase().ends_with(".png") {
                    return Err(DataError::layout(
                        file_path,
                        "expected only .png drawings in a character folder",
                    ));
                }
                files.push((file, Locator { path: file_path, zip_index: None }));
            }
        }
    }
    flatten(path, tree)
}

fn flatten(path: &Path, tree: Tree) -> Result<Vec<SourceClass>> {
    if tree.is_empty() {
        return Err(DataError::layout(
            path,
            "no alphabet found (expected <alphabet>/<character>/<drawing>.png)",
        ));
    }
    let mut classes = Vec::new();
    for (alphabet, characters) in tree {
        if characters.is_empty() {
            return Err(DataError::layout(path.join(&alphabet), "alphabet without any character folder"));
        }
        for (character, mut files) in characters {
            if files.is_empty() {
                return Err(DataError::EmptyClass { path: path.join(&alphabet).join(&character) });
            }
            files.sort_by(|a, b| a.0.cmp(&b.0));
            let files = files.into_iter().map(|(_, locator)| locator).collect();
            classes.push(SourceClass { alphabet: alphabet.clone(), character, files });
        }
    }
    Ok(classes)
}
