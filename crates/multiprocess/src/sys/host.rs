//! What names this machine and this program to other machines: the host name, and the main
//! program's ELF build-id (the cluster's build identity).

/// This machine's host name, if it has one.
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    (rc == 0 && len > 0).then(|| String::from_utf8_lossy(&buf[..len]).into_owned())
}

/// The note type of a GNU build-id.
const NT_GNU_BUILD_ID: u32 = 3;

/// The build-id the linker wrote into the main program (`.note.gnu.build-id`), found through
/// `dl_iterate_phdr` on its `PT_NOTE` segments; `None` if it has none.
pub fn main_program_build_id() -> Option<Vec<u8>> {
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
    unsafe {
        libc::dl_iterate_phdr(
            Some(each_object),
            &mut found as *mut Option<Vec<u8>> as *mut libc::c_void,
        )
    };
    found
}

/// Finds the GNU build-id in a block of ELF notes: each note is `namesz`, `descsz`, `type`
/// (native-endian u32s), then the name and the descriptor, each padded to 4 bytes.
pub(crate) fn find_build_id(mut notes: &[u8]) -> Option<&[u8]> {
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

    #[test]
    fn notes_are_walked_past_other_kinds() {
        let mut notes = Vec::new();
        let kinds: [(&[u8], u32, &[u8]); 2] =
            [(b"XYZ\0", 1, &[9, 9, 9]), (b"GNU\0", 3, &[1, 2, 3, 4, 5])];
        for (name, kind, desc) in kinds {
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

    #[test]
    fn the_test_binary_has_a_build_id_and_a_host_name() {
        assert!(main_program_build_id().is_some_and(|id| id.len() >= 8));
        assert!(hostname().is_some());
    }
}
