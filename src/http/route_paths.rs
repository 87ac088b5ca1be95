//! How the console's and the API's guards find a request's row in their route tables: the path
//! as actix routes it (percent-decoded) against each row's pattern, `{name}` segments standing
//! for one non-empty segment. The first row that matches wins, as it does when actix routes.

/// Whether a route's path (with `{name}` segments) matches a request path.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let (mut p, mut q) = (pattern.split('/'), path.split('/'));
    loop {
        match (p.next(), q.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if (a.starts_with('{') && !b.is_empty()) || a == b => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::path_matches;

    #[test]
    fn segments_match_one_for_one() {
        assert!(path_matches(
            "/admin/issues/{id}/send",
            "/admin/issues/7/send"
        ));
        assert!(!path_matches(
            "/admin/issues/{id}/send",
            "/admin/issues//send"
        ));
        assert!(!path_matches("/admin/issues/{id}", "/admin/issues/7/send"));
        assert!(!path_matches("/admin/issues", "/admin/issues/"));
    }
}
