//! Paths quoted as a shell would read them back, as GNU `cp` and `ls` quote names in their
//! messages (`--quoting-style=shell-escape-always`): `'a b'`, `"it's"`, `'it'\''s $x'`, and
//! `'new'$'\n''line'` for control characters and bytes that are not UTF-8, which are never
//! printed raw.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `path` quoted for a message: always in quotes, escapes where a byte is not printable.
///
/// ```ignore
/// assert_eq!(quote(Path::new("src/a b")), "'src/a b'");
/// assert_eq!(quote(Path::new("new\nline")), "'new'$'\\n''line'");
/// ```
pub fn quote(path: &Path) -> String {
    let bytes = path.as_os_str().as_bytes();
    let pieces = pieces(bytes);
    let plain = pieces.iter().all(|p| matches!(p, Piece::Text(_)));
    let text: String = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Text(t) => Some(*t),
            Piece::Escape(_) => None,
        })
        .collect();
    // GNU prefers double quotes for a name with a single quote, where nothing in it means
    // anything inside double quotes.
    if plain && text.contains('\'') && !text.contains(['"', '$', '`', '\\', '!']) {
        return format!("\"{text}\"");
    }
    let mut out = String::from("'");
    let mut open = true;
    for piece in &pieces {
        match piece {
            Piece::Text(t) => {
                if !open {
                    out.push('\'');
                    open = true;
                }
                out.push_str(&t.replace('\'', "'\\''"));
            }
            Piece::Escape(b) => {
                if open {
                    out.push_str("'$'");
                    open = false;
                } else {
                    // Reopen the $'...' run: drop its closing quote.
                    out.pop();
                }
                out.push_str(&escape(*b));
                out.push('\'');
            }
        }
    }
    if open {
        out.push('\'');
    }
    out
}

/// A stretch of printable text, or one byte to escape.
enum Piece<'a> {
    Text(&'a str),
    Escape(u8),
}

/// Splits `bytes` into printable UTF-8 text and the bytes to escape (control characters
/// and bytes that are not UTF-8).
fn pieces(mut bytes: &[u8]) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let valid = match std::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
        };
        let mut start = 0;
        for (i, c) in valid.char_indices() {
            if c.is_control() {
                if start < i {
                    out.push(Piece::Text(&valid[start..i]));
                }
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push(Piece::Escape(b));
                }
                start = i + c.len_utf8();
            }
        }
        if start < valid.len() {
            out.push(Piece::Text(&valid[start..]));
        }
        bytes = &bytes[valid.len()..];
        if let Some((&bad, rest)) = bytes.split_first() {
            out.push(Piece::Escape(bad));
            bytes = rest;
        }
    }
    out
}

/// One byte as C escapes it: `\n`, `\t`, ..., else three octal digits.
fn escape(b: u8) -> String {
    match b {
        0x07 => "\\a".into(),
        0x08 => "\\b".into(),
        0x0c => "\\f".into(),
        b'\n' => "\\n".into(),
        b'\r' => "\\r".into(),
        b'\t' => "\\t".into(),
        0x0b => "\\v".into(),
        _ => format!("\\{b:03o}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn q(bytes: &[u8]) -> String {
        quote(Path::new(OsStr::from_bytes(bytes)))
    }

    /// Each expected form is what `ls --quoting-style=shell-escape-always` prints.
    #[test]
    fn names_are_quoted_as_gnu_quotes_them() {
        assert_eq!(q(b"plain"), "'plain'");
        assert_eq!(q(b"src/a b"), "'src/a b'");
        assert_eq!(q("é".as_bytes()), "'é'");
        assert_eq!(q(b"x$y"), "'x$y'");
        assert_eq!(q(b"it's"), "\"it's\"");
        assert_eq!(q(b"it's $x"), "'it'\\''s $x'");
        assert_eq!(q(b"it's\""), "'it'\\''s\"'");
        assert_eq!(q(b"new\nline"), "'new'$'\\n''line'");
        assert_eq!(q(b"\nfoo"), "''$'\\n''foo'");
        assert_eq!(q(b"a\n\tb"), "'a'$'\\n\\t''b'");
        assert_eq!(q(b"caf\xe9"), "'caf'$'\\351'");
        assert_eq!(q(b"x\x7fy"), "'x'$'\\177''y'");
        assert_eq!(q(b"it's\nz"), "'it'\\''s'$'\\n''z'");
    }
}
