//! Fake values that are deterministic per input: `HMAC-SHA256(key, rule ‖ 0 ‖ value)`.
//!
//! The rule's kind (not the column) is mixed in, so the same email masks to the same fake email
//! in every table and a join or a foreign key on a masked column still matches; a different
//! kind of rule on the same value gives an unrelated output. Without the key the fakes cannot
//! be reversed by hashing guessed inputs, which is why the key is required and never has a
//! default.
//!
//! Every generator guarantees `fake != original` for any non-empty input, so "no masked cell
//! holds its original value" holds by construction, not by luck.

use hmac::Mac;

/// HMAC-SHA256 with the key prepared once; cloned per value.
#[derive(Clone)]
pub struct Hmac(hmac::Hmac<sha2::Sha256>);

impl Hmac {
    /// Prepares the key.
    pub fn new(key: &[u8]) -> Self {
        Hmac(hmac::Hmac::new_from_slice(key).expect("HMAC takes keys of any length"))
    }

    /// The MAC of the concatenation of `parts`.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut m = self.0.clone();
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }
}

/// An endless deterministic byte stream for one (kind, value): MAC blocks with a counter.
struct Stream<'a> {
    hmac: &'a Hmac,
    kind: &'a [u8],
    value: &'a [u8],
    block: [u8; 32],
    pos: usize,
    counter: u32,
}

impl<'a> Stream<'a> {
    fn new(hmac: &'a Hmac, kind: &'a str, value: &'a [u8]) -> Self {
        let block = hmac.mac(&[kind.as_bytes(), &[0], &0u32.to_be_bytes(), value]);
        Stream {
            hmac,
            kind: kind.as_bytes(),
            value,
            block,
            pos: 0,
            counter: 0,
        }
    }

    fn byte(&mut self) -> u8 {
        if self.pos == 32 {
            self.counter += 1;
            self.block = self
                .hmac
                .mac(&[self.kind, &[0], &self.counter.to_be_bytes(), self.value]);
            self.pos = 0;
        }
        self.pos += 1;
        self.block[self.pos - 1]
    }

    /// A uniform-enough index below `n` (n <= 256; the bias is irrelevant for fakes).
    fn below(&mut self, n: usize) -> usize {
        self.byte() as usize % n
    }
}

/// `user-<16 hex>@example.com`: 64 bits of the MAC, so a million distinct addresses collide
/// with probability about 3e-8 and a unique index on the column survives. The local part is
/// case-folded first: `Bob@x.org` and `bob@x.org` are one mailbox and mask alike.
pub fn email(hmac: &Hmac, value: &str) -> String {
    let folded = value.trim().to_lowercase();
    let mac = hmac.mac(&[b"email", &[0], folded.as_bytes()]);
    let mut out = String::with_capacity(33);
    out.push_str("user-");
    out.push_str(&hex::encode(&mac[..8]));
    out.push_str("@example.com");
    out
}

const FIRST: &[&str] = &[
    "Ada", "Alan", "Ayla", "Bruno", "Carmen", "Cyril", "Dana", "Dmitri", "Edith", "Emil", "Farah",
    "Felix", "Greta", "Hugo", "Ines", "Ivo", "Jana", "Joel", "Kira", "Lars", "Lena", "Milo",
    "Nadia", "Nils", "Olga", "Omar", "Paula", "Quinn", "Rosa", "Rui", "Sanna", "Taro", "Ulla",
    "Vera", "Wim", "Yara", "Zeno", "Zofia",
];
const LAST: &[&str] = &[
    "Abernathy",
    "Bergqvist",
    "Castellano",
    "Dunmore",
    "Eriksen",
    "Falkner",
    "Gallardo",
    "Holloway",
    "Ibarra",
    "Jovanovic",
    "Kowalczyk",
    "Lindqvist",
    "Marchetti",
    "Nakagawa",
    "Okonkwo",
    "Pellegrini",
    "Quintero",
    "Rasmussen",
    "Santangelo",
    "Thornbury",
    "Umberg",
    "Valdivia",
    "Whitcombe",
    "Yamashita",
    "Zabriskie",
];

/// "First Last" from fixed lists. Names need not be unique, only plausible and consistent.
pub fn name(hmac: &Hmac, value: &str) -> String {
    let mut s = Stream::new(hmac, "name", value.as_bytes());
    let mut out = format!(
        "{} {}",
        FIRST[s.below(FIRST.len())],
        LAST[s.below(LAST.len())]
    );
    if out == value {
        out.push_str(" Jr.");
    }
    out
}

/// Every ASCII digit replaced by a derived digit, everything else (`+`, spaces, dashes,
/// parentheses, letters) kept, so a phone number keeps its shape and a digits-only column
/// still parses as a number of the same width. A leading digit is never made `0`, so a
/// number column keeps its magnitude.
pub fn digits(hmac: &Hmac, kind: &str, value: &str) -> String {
    let mut s = Stream::new(hmac, kind, value.as_bytes());
    let mut out: Vec<u8> = value.as_bytes().to_vec();
    let mut first = true;
    for b in out.iter_mut() {
        if b.is_ascii_digit() {
            let d = if first { 1 + s.below(9) } else { s.below(10) } as u8;
            *b = b'0' + d;
            first = false;
        }
    }
    if out == value.as_bytes() {
        // Same digits by chance (1 in 10^n): move the last digit on, deterministically.
        if let Some(b) = out.iter_mut().rev().find(|b| b.is_ascii_digit()) {
            *b = if *b == b'9' { b'1' } else { *b + 1 };
        }
    }
    String::from_utf8(out).expect("ASCII digits replaced by ASCII digits")
}

/// Free text: every letter or digit (any script) replaced by a derived ASCII letter of the
/// same case, or digit; whitespace and punctuation kept, so the length in characters, the
/// word boundaries and the line breaks survive and nothing of the words does.
pub fn text(hmac: &Hmac, value: &str) -> String {
    let mut s = Stream::new(hmac, "text", value.as_bytes());
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_ascii_digit() {
            out.push((b'0' + s.below(10) as u8) as char);
        } else if c.is_alphanumeric() {
            let base = if c.is_uppercase() { b'A' } else { b'a' };
            out.push((base + s.below(26) as u8) as char);
        } else {
            out.push(c);
        }
    }
    if out == value
        && let Some((i, c)) = out.char_indices().rev().find(|(_, c)| c.is_alphanumeric())
    {
        let next = match c {
            'z' => 'a',
            'Z' => 'A',
            '9' => '0',
            c => (c as u8 + 1) as char,
        };
        out.replace_range(i..i + c.len_utf8(), next.encode_utf8(&mut [0; 4]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let h = Hmac::new(b"Jefe");
        let mac = h.mac(&[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn hmac_hashes_keys_longer_than_a_block() {
        // RFC 4231 case 6: a 131-byte key.
        let h = Hmac::new(&[0xaa; 131]);
        let mac = h.mac(&[b"Test Using Larger Than Block-Size Key - Hash Key First"]);
        assert_eq!(
            hex::encode(mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn email_is_consistent_case_insensitive_and_keyed() {
        let a = Hmac::new(b"key-one-key-one-");
        let b = Hmac::new(b"key-two-key-two-");
        let e = email(&a, "Bob@Example.org");
        assert_eq!(e, email(&a, "bob@example.org"));
        assert_ne!(e, email(&b, "bob@example.org"));
        assert_ne!(e, email(&a, "alice@example.org"));
        assert!(e.starts_with("user-") && e.ends_with("@example.com") && e.len() == 33);
    }

    #[test]
    fn digits_keep_the_shape_and_always_change() {
        let h = Hmac::new(b"0123456789abcdef");
        let p = digits(&h, "phone", "+49 (30) 123-4567");
        assert_eq!(p.len(), "+49 (30) 123-4567".len());
        for (x, y) in p.chars().zip("+49 (30) 123-4567".chars()) {
            assert_eq!(x.is_ascii_digit(), y.is_ascii_digit());
            if !y.is_ascii_digit() {
                assert_eq!(x, y);
            }
        }
        for n in 0..2000 {
            let v = n.to_string();
            let d = digits(&h, "digits", &v);
            assert_ne!(d, v);
            assert_eq!(d.len(), v.len());
            assert!(!d.starts_with('0'));
        }
    }

    #[test]
    fn text_keeps_layout_and_changes_every_word() {
        let h = Hmac::new(b"0123456789abcdef");
        let v = "Grüße, Zoë!\nLine\ttwo 42";
        let t = text(&h, v);
        assert_eq!(t.chars().count(), v.chars().count());
        assert!(t.contains(", ") && t.contains("!\n") && t.contains('\t'));
        for w in ["Grüße", "Zoë", "Line", "two", "42"] {
            assert!(!t.contains(w), "{t}");
        }
        assert_eq!(text(&h, "a"), text(&h, "a"));
        for c in 'a'..='z' {
            assert_ne!(text(&h, &c.to_string()), c.to_string());
        }
        assert_eq!(text(&h, " - "), " - ");
    }

    #[test]
    fn names_come_from_the_lists() {
        let h = Hmac::new(b"0123456789abcdef");
        let n = name(&h, "Zacharias Quisling");
        let (f, l) = n.split_once(' ').unwrap();
        assert!(FIRST.contains(&f) && LAST.contains(&l));
        assert_eq!(n, name(&h, "Zacharias Quisling"));
    }
}
