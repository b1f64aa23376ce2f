//! A small reader of delimited text files (RFC 4180 CSV): a header row of column names,
//! then records of as many fields.
//!
//! Fields are separated by one delimiter character (`,` by default); a field may be
//! enclosed in double quotes, inside which delimiters and line breaks are literal and `""`
//! is one quote. Lines end with LF or CRLF; a UTF-8 byte-order mark is skipped; blank
//! lines are skipped. Every error names the file and the line.

use crate::error::{DataError, Result};
use std::path::{Path, PathBuf};

/// A parsed file: its column names and records, each with the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CsvTable {
    /// The file, for error messages.
    pub path: PathBuf,
    /// The column names of the header row, trimmed.
    pub columns: Vec<String>,
    /// `(line, fields)` of every record (lines count from 1, the header being line 1).
    pub records: Vec<(usize, Vec<String>)>,
}

impl CsvTable {
    /// Reads and parses `path`.
    pub(crate) fn read(path: &Path, delimiter: char) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        Self::parse(&text, delimiter, path)
    }

    /// Parses `text`; `path` names it in errors.
    pub(crate) fn parse(text: &str, delimiter: char, path: &Path) -> Result<Self> {
        if delimiter == '"' || delimiter == '\n' || delimiter == '\r' {
            return Err(DataError::invalid(
                "csv.delimiter",
                format!("{delimiter:?}"),
                "not a quote or line break",
            ));
        }
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut rows = records(text, delimiter, path)?.into_iter();
        let (_, header) =
            rows.next().ok_or_else(|| DataError::layout(path, "empty file: expected a header row"))?;
        let columns: Vec<String> = header.iter().map(|c| c.trim().to_owned()).collect();
        for (i, name) in columns.iter().enumerate() {
            if name.is_empty() {
                return Err(DataError::layout(path, format!("line 1: column {} has no name", i + 1)));
            }
            if columns[..i].contains(name) {
                return Err(DataError::layout(path, format!("line 1: column {name:?} appears twice")));
            }
        }
        let records: Vec<(usize, Vec<String>)> = rows.collect();
        for (line, fields) in &records {
            if fields.len() != columns.len() {
                return Err(DataError::layout(
                    path,
                    format!(
                        "line {line}: {} fields, but the header has {} columns",
                        fields.len(),
                        columns.len()
                    ),
                ));
            }
        }
        Ok(Self { path: path.to_owned(), columns, records })
    }

    /// The index of column `name`, or an error naming the configuration field and the
    /// columns the file has.
    pub(crate) fn column(&self, name: &str, field: &str) -> Result<usize> {
        self.columns.iter().position(|c| c == name).ok_or_else(|| {
            DataError::invalid(
                field,
                name,
                format!(
                    "no such column in {} (its columns: {})",
                    self.path.display(),
                    self.columns.join(", ")
                ),
            )
        })
    }

    /// The value of a field as a finite number, or an error naming the line and column.
    pub(crate) fn number(&self, record: usize, column: usize) -> Result<f64> {
        let (line, fields) = &self.records[record];
        let text = fields[column].trim();
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(DataError::layout(
                &self.path,
                format!("line {line}, column {:?}: {text:?} is not a finite number", self.columns[column]),
            )),
        }
    }
}

/// Splits `text` into records of fields, with the line each record starts on; blank lines
/// are skipped.
fn records(text: &str, delimiter: char, path: &Path) -> Result<Vec<(usize, Vec<String>)>> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while chars.peek().is_some() {
        let start = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut quote_line = line;
        loop {
            let Some(c) = chars.next() else {
                if quoted {
                    return Err(DataError::layout(
                        path,
                        format!("line {quote_line}: unterminated quoted field"),
                    ));
                }
                break;
            };
            if quoted {
                match c {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => quoted = false,
                    '\n' => {
                        line += 1;
                        field.push(c);
                    }
                    _ => field.push(c),
                }
                continue;
            }
            match c {
                '"' if field.trim().is_empty() => {
                    field.clear();
                    quoted = true;
                    quote_line = line;
                }
                '\n' => {
                    line += 1;
                    break;
                }
                '\r' if chars.peek() == Some(&'\n') => {}
                c if c == delimiter => fields.push(std::mem::take(&mut field)),
                _ => field.push(c),
            }
        }
        if fields.is_empty() && field.trim().is_empty() {
            continue;
        }
        fields.push(field);
        out.push((start, fields));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<CsvTable> {
        CsvTable::parse(text, ',', Path::new("t.csv"))
    }

    #[test]
    fn quotes_line_breaks_and_blank_lines() {
        let t = parse("\u{feff}a, b ,c\r\n1,\"x, \"\"y\"\"\",3\n\n\"multi\nline\",,\"\"\n").unwrap();
        assert_eq!(t.columns, ["a", "b", "c"]);
        assert_eq!(t.records[0], (2, vec!["1".to_owned(), "x, \"y\"".to_owned(), "3".to_owned()]));
        // The blank line 3 is skipped; the quoted line break counts as a line.
        assert_eq!(t.records[1], (4, vec!["multi\nline".to_owned(), String::new(), String::new()]));
        assert_eq!(t.records.len(), 2);
        assert_eq!(t.number(0, 2).unwrap(), 3.0);
        let tabs = CsvTable::parse("a\tb\n1\t2", '\t', Path::new("t.tsv")).unwrap();
        assert_eq!(tabs.records[0].1, ["1", "2"]);
    }

    #[test]
    fn errors_name_the_line_and_column() {
        let err = |text: &str| parse(text).unwrap_err().to_string();
        assert!(err("a,b\n1,2\n3\n").contains("line 3: 1 fields, but the header has 2 columns"));
        assert!(err("a,b\n1,\"2\n").contains("line 2: unterminated quoted field"));
        assert!(err("a,a\n").contains("column \"a\" appears twice"));
        assert!(err("a,\n").contains("column 2 has no name"));
        assert!(err("").contains("empty file"));
        let t = parse("a,b\n1,x\n2,nan\n").unwrap();
        let e = t.number(0, 1).unwrap_err().to_string();
        assert!(
            e.contains("t.csv") && e.contains("line 2, column \"b\": \"x\" is not a finite number"),
            "{e}"
        );
        assert!(t.number(1, 1).is_err(), "NaN is refused");
        let e = t.column("c", "csv.tasks").unwrap_err().to_string();
        assert!(e.contains("csv.tasks = c") && e.contains("its columns: a, b"), "{e}");
    }
}
