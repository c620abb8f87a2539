//! Unit tests of the deque: records that never wrap (pads, growth, both ends), failed
//! encodings and decodings, an empty record into a ring full to the byte, and a model test
//! against a `VecDeque`.

use super::*;

fn push(d: &SharedDeque, len: usize, fill: u8) {
    let bytes = vec![fill; len];
    d.push(&mut Parts(&[&bytes]), Wait::No, false, None)
        .unwrap();
}

fn pop(d: &SharedDeque, end: End) -> (usize, u8) {
    d.pop(end, Wait::No, None, &mut |b: &[u8], _| {
        assert!(b.iter().all(|&x| x == b[0]), "a torn record");
        Ok((b.len(), b.first().copied().unwrap_or(0)))
    })
    .unwrap()
}

/// Records that do not fit before the ring's end start at its start after a pad, and come
/// out whole and in order from either end; a ring too small grows, pads and all.
#[test]
fn records_never_wrap() {
    let d = SharedDeque::create(0).unwrap();
    // 64 KiB ring: three 20 KiB records, then one more after taking the first wraps.
    for i in 0..3 {
        push(&d, 20 << 10, i);
    }
    assert_eq!(pop(&d, End::Front), (20 << 10, 0));
    push(&d, 20 << 10, 3); // pad to the end, then at the start
    assert_eq!(d.len(), 3);
    assert_eq!(pop(&d, End::Back), (20 << 10, 3)); // takes the pad with it
    push(&d, 20 << 10, 4);
    push(&d, 30 << 10, 5); // does not fit at all: grows
    let order: Vec<_> = (0..4).map(|_| pop(&d, End::Front).1).collect();
    assert_eq!(order, [1, 2, 4, 5]);
    assert_eq!(d.len(), 0);
    // Empty records and records of every small size round-trip.
    for n in 0..100 {
        push(&d, n, n as u8);
    }
    for n in 0..100 {
        assert_eq!(pop(&d, End::Front), (n, if n == 0 { 0 } else { n as u8 }));
    }
}

/// An item whose encoding fails publishes nothing; one whose decoding fails is still taken.
#[test]
fn failed_encodings_and_decodings_leave_the_deque_sound() {
    struct Fails;
    impl Encode for Fails {
        fn encode<W: std::io::Write>(&mut self, w: &mut W) -> Result<Vec<OwnedFd>> {
            w.write_all(&[1; 100])
                .map_err(|e| Error::Encode(e.to_string()))?;
            Err(Error::Encode("no".into()))
        }
    }
    let d = SharedDeque::create(0).unwrap();
    assert!(d.push(&mut Fails, Wait::No, false, None).is_err());
    assert_eq!(d.len(), 0);
    push(&d, 10, 1);
    let r: Result<()> = d.pop(End::Front, Wait::No, None, &mut |_, _| {
        Err(Error::Decode("no".into()))
    });
    assert!(r.is_err());
    assert_eq!(
        d.len(),
        0,
        "a record that cannot be decoded is taken anyway"
    );
    push(&d, 10, 2);
    assert_eq!(pop(&d, End::Front), (10, 2));
}

/// The tail's free run: what the next record can take without a pad or growth.
fn free_at_tail(d: &SharedDeque) -> u64 {
    let ((tail, _), _) = d.ends();
    d.free_run(tail)
}

/// A record that fills the free run to the byte (payload = run less the slack).
fn exact_fill(d: &SharedDeque) -> usize {
    free_at_tail(d).saturating_sub(RECORD_SLACK) as usize
}

/// An empty record into a ring full to the byte does not overwrite the oldest record: it goes
/// after a pad or into a grown ring, and every record comes out whole.
#[test]
fn empty_record_into_a_full_ring() {
    let d = SharedDeque::create(0).unwrap();
    for i in 0..4 {
        push(&d, exact_fill(&d).min(16360), i + 1);
    }
    assert_eq!(free_at_tail(&d), 0, "the ring should be full to the byte");
    push(&d, 0, 0);
    assert_eq!(d.len(), 5);
    for i in 0..4 {
        assert_eq!(pop(&d, End::Front), (16360, i + 1));
    }
    assert_eq!(pop(&d, End::Front), (0, 0));
}

/// Random pushes (many filling the free run exactly, many empty) and pops from either end,
/// against a `VecDeque`: the same records in the same order, whole.
#[test]
fn model_against_a_vecdeque() {
    let d = SharedDeque::create(0).unwrap();
    let mut model = std::collections::VecDeque::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for step in 0..5_000u32 {
        let fill = (step % 251) as u8 + 1;
        match next(8) {
            0..=3 => {
                let len = match next(4) {
                    // (A short run only: filling big ones would grow the ring without end.)
                    0 if exact_fill(&d) < 20_000 => exact_fill(&d),
                    1 => 0,
                    _ => next(3000) as usize,
                };
                push(&d, len, fill);
                model.push_back((len, if len == 0 { 0 } else { fill }));
            }
            4..=5 => {
                if let Some(want) = model.pop_front() {
                    assert_eq!(pop(&d, End::Front), want, "step {step}");
                }
            }
            _ => {
                if let Some(want) = model.pop_back() {
                    assert_eq!(pop(&d, End::Back), want, "step {step}");
                }
            }
        }
        assert_eq!(d.len(), model.len() as u64, "step {step}");
    }
    while let Some(want) = model.pop_front() {
        assert_eq!(pop(&d, End::Front), want);
    }
}
