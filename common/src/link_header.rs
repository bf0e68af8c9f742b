//! The `Link` header (RFC 8288) of paged answers: registries' tag lists and GitHub's pages.

/// The target of the `rel="next"` link in a `Link` header value (RFC 8288), for tag lists
/// and GitHub's pages alike.
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"));
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::next_link;

    #[test]
    fn next_links() {
        assert_eq!(
            next_link("</v2/a/tags/list?last=x&n=100>; rel=\"next\"").as_deref(),
            Some("/v2/a/tags/list?last=x&n=100")
        );
        assert_eq!(
            next_link("<https://r/prev>; rel=\"prev\", <https://r/next>; rel=\"next\"").as_deref(),
            Some("https://r/next")
        );
        assert_eq!(next_link("<https://r/prev>; rel=\"prev\""), None);
        assert_eq!(next_link("garbage"), None);
    }
}
