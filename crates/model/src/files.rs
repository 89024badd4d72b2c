//! Reading the small text files users hand in (configs, palettes, lexicons, lambda and pair
//! files) with a size limit: a file that never ends (`/dev/zero`, a FIFO) or a huge one fails
//! with one line naming it and the limit, instead of filling memory.

use crate::error::{Error, Result};
use std::io::Read;
use std::path::Path;

/// The largest text file read whole (a tokenizer's `tokenizer.json`, read by the tokenizers
/// crate, is not one of them).
pub const MAX_TEXT_FILE_BYTES: u64 = 64 << 20;

/// The whole of `path` as UTF-8, at most `MAX_TEXT_FILE_BYTES`.
pub fn read_text(path: &Path) -> Result<String> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_TEXT_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > MAX_TEXT_FILE_BYTES {
        return Err(Error::Limit(format!(
            "{}: larger than {MAX_TEXT_FILE_BYTES} bytes (the limit for a text file)",
            path.display()
        )));
    }
    String::from_utf8(bytes)
        .map_err(|e| Error::format(path, format!("not UTF-8 text ({})", e.utf8_error())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endless_and_binary_files_are_one_line_errors() {
        if Path::new("/dev/zero").exists() {
            let e = read_text(Path::new("/dev/zero")).unwrap_err().to_string();
            assert!(e.contains("/dev/zero") && e.contains("limit"), "{e}");
        } else {
            eprintln!("SKIPPED the endless-file case: this system has no /dev/zero");
        }
        let dir = std::env::temp_dir().join(format!("ethos-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bin.csv");
        std::fs::write(&p, b"a,b\n\xff\xfe\n").unwrap();
        let e = read_text(&p).unwrap_err().to_string();
        assert!(e.contains("bin.csv") && e.contains("not UTF-8"), "{e}");
        std::fs::write(&p, "phrase,weight\n").unwrap();
        assert_eq!(read_text(&p).unwrap(), "phrase,weight\n");
        std::fs::remove_dir_all(&dir).ok();
    }
}
