//! The build identity of the running program: which binary a task was made for.
//!
//! A task names its function by an offset inside one binary (see `process/target.rs`), which
//! means nothing in another build. Each task therefore goes to the stream of its build only, and
//! a node serves the stream of its own build. The identity is the ELF build-id the linker writes
//! into the `.note.gnu.build-id` section (a hash of the linked output, present by default with
//! the GNU and LLVM linkers as Rust drives them on Linux), found through `dl_iterate_phdr` on the
//! main program's `PT_NOTE` headers. A binary without one is identified by the SHA-256 of its
//! file instead.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// How many hex digits of the identity name a build (64 bits: collisions are out of reach).
const BUILD_HEX_DIGITS: usize = 16;

/// The note type of a GNU build-id.
const NT_GNU_BUILD_ID: u32 = 3;

/// This program's build identity, as hex digits (computed once).
pub(crate) fn build_id() -> Result<&'static str> {
    static BUILD: OnceLock<String> = OnceLock::new();
    if let Some(id) = BUILD.get() {
        return Ok(id);
    }
    let bytes = match elf_build_id() {
        Some(bytes) => bytes,
        None => executable_hash()?,
    };
    let mut hex = to_hex(&bytes);
    hex.truncate(BUILD_HEX_DIGITS);
    Ok(BUILD.get_or_init(|| hex))
}

/// Lower-case hex of some bytes.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The SHA-256 of the running executable's file.
fn executable_hash() -> Result<Vec<u8>> {
    let mut file = std::fs::File::open("/proc/self/exe")?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .map_err(|e| Error::Broker(format!("could not read the executable to identify it: {e}")))?;
    Ok(hasher.finalize().to_vec())
}

/// The build-id note of the main program, if it has one.
fn elf_build_id() -> Option<Vec<u8>> {
    /// Called for each loaded object; the first is the main program. Stores its build-id.
    unsafe extern "C" fn each_object(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        out: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid `dl_phdr_info` for a loaded object; `out` is the
        // `Option<Vec<u8>>` given to `dl_iterate_phdr` below, alive for the whole call.
        let (info, out) = unsafe { (&*info, &mut *(out as *mut Option<Vec<u8>>)) };
        for i in 0..info.dlpi_phnum as usize {
            // SAFETY: `dlpi_phdr` points at `dlpi_phnum` program headers.
            let phdr = unsafe { &*info.dlpi_phdr.add(i) };
            if phdr.p_type != libc::PT_NOTE {
                continue;
            }
            let start = (info.dlpi_addr as usize).wrapping_add(phdr.p_vaddr as usize);
            // SAFETY: a PT_NOTE segment is loaded (it lies inside a PT_LOAD segment) and is
            // `p_memsz` bytes long at the object's base plus `p_vaddr`.
            let notes =
                unsafe { std::slice::from_raw_parts(start as *const u8, phdr.p_memsz as usize) };
            if let Some(id) = find_build_id(notes) {
                *out = Some(id.to_vec());
                break;
            }
        }
        1 // the main program is the first object: stop here
    }
    let mut found: Option<Vec<u8>> = None;
    // SAFETY: the callback only reads the headers the loader hands it and writes `found`,
    // which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(each_object), &mut found as *mut _ as *mut libc::c_void) };
    found
}

/// Finds the GNU build-id in a block of ELF notes: each note is `namesz`, `descsz`, `type`
/// (native-endian u32s), then the name and the descriptor, each padded to 4 bytes.
fn find_build_id(mut notes: &[u8]) -> Option<&[u8]> {
    let word = |b: &[u8], at: usize| -> Option<usize> {
        Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    let pad = |n: usize| (n + 3) & !3;
    while notes.len() >= 12 {
        let (namesz, descsz, kind) = (word(notes, 0)?, word(notes, 4)?, word(notes, 8)? as u32);
        let name = notes.get(12..12 + namesz)?;
        let desc_at = 12 + pad(namesz);
        let desc = notes.get(desc_at..desc_at + descsz)?;
        if kind == NT_GNU_BUILD_ID && name == b"GNU\0" && !desc.is_empty() {
            return Some(desc);
        }
        notes = notes.get(desc_at + pad(descsz)..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The identity is the linker's build-id, as `readelf -n` shows it.
    #[test]
    fn build_id_is_the_elf_note() {
        let id = build_id().unwrap();
        assert_eq!(id.len(), BUILD_HEX_DIGITS);
        assert!(
            elf_build_id().is_some(),
            "the test binary has a build-id note"
        );
        let raw = to_hex(&elf_build_id().unwrap());
        assert!(raw.starts_with(id));
    }

    #[test]
    fn notes_are_walked_past_other_kinds() {
        let mut notes = Vec::new();
        for (name, kind, desc) in [
            (&b"XYZ\0"[..], 1u32, &[9u8, 9, 9][..]),
            (b"GNU\0", 3, &[1, 2, 3, 4, 5]),
        ] {
            notes.extend((name.len() as u32).to_ne_bytes());
            notes.extend((desc.len() as u32).to_ne_bytes());
            notes.extend(kind.to_ne_bytes());
            notes.extend(name);
            notes.extend(desc);
            notes.resize((notes.len() + 3) & !3, 0);
        }
        assert_eq!(find_build_id(&notes), Some(&[1u8, 2, 3, 4, 5][..]));
        assert_eq!(find_build_id(&notes[..20]), None);
    }
}
