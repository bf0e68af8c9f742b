//! GNU `sort -V` order: coreutils' `filevercmp` with `sort`'s byte-wise last resort.
//!
//! A port of gnulib's `filevercmp.c` (the version in coreutils 9.x). Digit runs compare as
//! numbers, letters sort before every other byte, `~` sorts before everything (even the end of
//! the string), and trailing "file suffixes" (`(\.[A-Za-z~][A-Za-z0-9~]*)*$`) only break ties.
//! When `filevercmp` finds two lines equal (`a01` and `a1`), `sort` compares their bytes, as
//! `LC_ALL=C sort -V` does; [`sort_v`] does the same.

use std::cmp::Ordering;

/// Compares two lines as `LC_ALL=C sort -V` does.
pub fn sort_v(a: &[u8], b: &[u8]) -> Ordering {
    filevercmp(a, b).then_with(|| a.cmp(b))
}

/// Compares two strings as gnulib's `filevercmp` does; equal means "same version", which can
/// hold for different strings.
pub fn filevercmp(a: &[u8], b: &[u8]) -> Ordering {
    // Empty strings first.
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Less,
        (false, true) => return Ordering::Greater,
        (false, false) => {}
    }
    // "." first, then "..", then other names with a leading ".", then other names.
    match (a[0] == b'.', b[0] == b'.') {
        (true, false) => return Ordering::Less,
        (false, true) => return Ordering::Greater,
        (true, true) => {
            let rank = |s: &[u8]| match s {
                b"." => 0,
                b".." => 1,
                _ => 2,
            };
            match (rank(a), rank(b)) {
                (2, 2) => {}
                (ra, rb) => return ra.cmp(&rb),
            }
        }
        (false, false) => {}
    }
    let a_prefix = prefix_len(a);
    let b_prefix = prefix_len(b);
    let result = verrevcmp(&a[..a_prefix], &b[..b_prefix]);
    let one_pass_only = a_prefix == a.len() && b_prefix == b.len();
    if result != Ordering::Equal || one_pass_only {
        result
    } else {
        verrevcmp(a, b)
    }
}

/// Length of `s` without its longest suffix matching `(\.[A-Za-z~][A-Za-z0-9~]*)*$`. A name
/// with a leading dot can be all suffix (`.abA`), as GNU sort treats it.
fn prefix_len(s: &[u8]) -> usize {
    let n = s.len();
    let mut i = 0;
    loop {
        let prefix = i;
        while i + 1 < n && s[i] == b'.' && (s[i + 1].is_ascii_alphabetic() || s[i + 1] == b'~') {
            i += 2;
            while i < n && (s[i].is_ascii_alphanumeric() || s[i] == b'~') {
                i += 1;
            }
        }
        if i == n {
            return prefix;
        }
        i += 1;
    }
}

/// The weight of the byte at `pos` outside digit runs: the end of the string before everything
/// but `~`, digits as 0, letters by value, other bytes after all letters.
fn order(s: &[u8], pos: usize) -> i32 {
    match s.get(pos) {
        None => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(*c),
        Some(b'~') => -2,
        Some(c) => i32::from(*c) + 256,
    }
}

/// dpkg's version comparison, as gnulib adapted it.
fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    let digit_at = |s: &[u8], p: usize| s.get(p).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let (ca, cb) = (order(a, i), order(b, j));
            if ca != cb {
                return ca.cmp(&cb);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit_at(a, i) && digit_at(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit_at(a, i) {
            return Ordering::Greater;
        }
        if digit_at(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(mut v: Vec<&str>) -> Vec<&str> {
        v.sort_by(|a, b| sort_v(a.as_bytes(), b.as_bytes()));
        v
    }

    #[test]
    fn numbers_compare_as_numbers() {
        assert_eq!(
            sorted(vec!["v1.10.0", "v1.9.2", "v1.2.10", "v1.2.9"]),
            vec!["v1.2.9", "v1.2.10", "v1.9.2", "v1.10.0"]
        );
    }

    #[test]
    fn letters_before_other_bytes_and_tilde_first() {
        assert_eq!(sort_v(b"a-b", b"ab"), Ordering::Greater);
        assert_eq!(sort_v(b"1.0~rc1", b"1.0"), Ordering::Less);
        assert_eq!(sort_v(b"a b", b"a-b"), Ordering::Less);
        assert_eq!(sort_v(b"", b"a"), Ordering::Less);
    }

    #[test]
    fn equal_versions_fall_back_to_bytes() {
        assert_eq!(filevercmp(b"a01", b"a1"), Ordering::Equal);
        assert_eq!(sort_v(b"a01", b"a1"), Ordering::Less);
    }

    #[test]
    fn suffixes_only_break_ties() {
        assert_eq!(prefix_len(b"foo.tar.gz"), 3);
        assert_eq!(prefix_len(b"x.1"), 3);
        assert_eq!(sort_v(b"a.tar", b"a.zip"), Ordering::Less);
        assert_eq!(sort_v(b"a1.zip", b"a2.tar"), Ordering::Less);
        // Hidden names may be all suffix: ".abA" and ".ab.o" tie, then compare whole.
        assert_eq!(prefix_len(b".ab.o"), 0);
        assert_eq!(sort_v(b".abA", b".ab.o"), Ordering::Less);
        assert_eq!(sort_v(b"abA", b"ab.o"), Ordering::Greater);
    }
}
