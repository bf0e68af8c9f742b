//! Laws that hold for every input, checked on generated ones: an images-list written and read
//! back is the same list, GNU `sort -V`'s order is a total order, and an image reference read,
//! written and read again is the same reference.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cmp::Ordering;

use image_mirror_common::version_sort::sort_v;
use image_mirror_common::{ImageRef, ImagesList};
use proptest::prelude::*;

/// A path component of a repository: lowercase, digits, with single separators inside (no
/// dot: a first component with one names a registry host).
fn component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,6}([_-][a-z0-9]{1,5}){0,2}"
}

fn registry() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("quay.io/".to_owned()),
        Just("registry.k8s.io/".to_owned()),
        Just("127.0.0.1:5000/".to_owned()),
        ("[a-z]{2,8}", prop::option::of(1_u16..)).prop_map(|(name, port)| match port {
            Some(p) => format!("{name}.example:{p}/"),
            None => format!("{name}.example/"),
        }),
    ]
}

fn repository() -> impl Strategy<Value = String> {
    (registry(), prop::collection::vec(component(), 1..4))
        .prop_map(|(registry, parts)| format!("{registry}{}", parts.join("/")))
}

fn tag() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"
}

/// Version-like text: digits, dots, letters, dashes, and now and then a tilde or a plus.
fn versionish() -> impl Strategy<Value = String> {
    "[a-z0-9.~+-]{0,12}"
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn an_images_list_written_and_read_back_is_the_same(
        entries in prop::collection::vec((repository(), repository(), tag()), 1..30),
        header in prop::option::of("# [a-z ]{0,20}"),
    ) {
        let mut text = header.map(|h| format!("{h}\n")).unwrap_or_default();
        for (source, target, tag) in &entries {
            text.push_str(&format!("{source} {target} {tag}\n"));
        }
        // Duplicates are refused on reading; a list with none reads, writes and reads again
        // to the very same bytes.
        if let Ok(list) = ImagesList::parse(text.as_bytes()) {
            let written = list.to_bytes();
            prop_assert_eq!(String::from_utf8(written.clone()).unwrap(), text);
            let again = ImagesList::parse(&written).unwrap();
            prop_assert_eq!(again.to_bytes(), written);
        }
    }

    #[test]
    fn sort_v_is_a_total_order(a in versionish(), b in versionish(), c in versionish()) {
        let (a, b, c) = (a.as_bytes(), b.as_bytes(), c.as_bytes());
        prop_assert_eq!(sort_v(a, a), Ordering::Equal);
        prop_assert_eq!(sort_v(a, b), sort_v(b, a).reverse());
        if sort_v(a, b) != Ordering::Greater && sort_v(b, c) != Ordering::Greater {
            prop_assert_ne!(sort_v(a, c), Ordering::Greater, "not transitive");
        }
        if sort_v(a, b) == Ordering::Equal {
            prop_assert_eq!(a, b, "only equal strings compare equal");
        }
    }

    #[test]
    fn a_reference_read_written_and_read_again_is_the_same(
        repo in repository(),
        tag in prop::option::of(tag()),
        digest in prop::option::of("[0-9a-f]{64}"),
    ) {
        let mut text = repo;
        if let Some(t) = &tag {
            text.push(':');
            text.push_str(t);
        }
        if let Some(d) = &digest {
            text.push_str("@sha256:");
            text.push_str(d);
        }
        let parsed: ImageRef = text.parse().unwrap();
        let again: ImageRef = parsed.to_string().parse().unwrap();
        prop_assert_eq!(&again, &parsed);
        prop_assert_eq!(again.to_string(), parsed.to_string());
        prop_assert_eq!(parsed.tag().map(|t| t.as_str().to_owned()), tag);
    }
}
