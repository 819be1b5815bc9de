//! A connection's `baseURI` as the boundary of where its requests may go.
//!
//! Invariant: every URL Sluice sends a connection's request to — a rendered `relativeURI`
//! (imports, lookups, exports), a paging `next` link, a redirect that carries credentials —
//! has the base's scheme, host and port, and a path whose segments start with the base's
//! segments. URLs are compared parsed, never as strings: `https://api.example.com.evil.net`
//! does not start with `https://api.example.com`, and `http://h:8000` is not `http://h:80`.
//! A rendered path may not hold `.` or `..` segments (nor `%2e` spellings of them), which
//! URL parsers and servers resolve into another path.

use url::Url;

#[derive(Debug, Clone)]
pub struct BaseUri {
    url: Url,
    /// The base path's segments, without the empty one a trailing `/` leaves.
    segments: Vec<String>,
}

impl BaseUri {
    /// The connection's `http.baseURI`, parsed (validation has checked it is http(s)).
    pub fn parse(base: &str) -> Result<BaseUri, String> {
        if base.trim().is_empty() {
            return Err("the connection has no baseURI".into());
        }
        let url = Url::parse(base.trim())
            .map_err(|e| format!("the connection's baseURI '{base}' is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
            return Err(format!(
                "the connection's baseURI '{base}' is not an http(s) URL with a host"
            ));
        }
        let segments = path_segments(&url);
        Ok(BaseUri { url, segments })
    }

    pub fn as_url(&self) -> &Url {
        &self.url
    }

    /// A rendered `relativeURI`: a path, appended to the base path whether or not it starts
    /// with `/`, or an absolute URL. Either way the result must lie within the base.
    pub fn join(&self, rendered: &str) -> Result<Url, String> {
        let rel = rendered.trim();
        check_rendered(rel).map_err(|why| format!("relativeURI rendered to '{rel}', {why}"))?;
        let url = if has_scheme(rel) {
            Url::parse(rel).map_err(|e| format!("relativeURI rendered to '{rel}': {e}"))?
        } else {
            let joined = format!(
                "{}/{}",
                self.url.as_str().trim_end_matches('/'),
                rel.trim_start_matches('/')
            );
            Url::parse(&joined).map_err(|e| format!("'{joined}' is not a valid URL: {e}"))?
        };
        self.check_within(&url)
            .map_err(|why| format!("relativeURI rendered to '{rel}', {why}"))?;
        Ok(url)
    }

    /// A link a reply pointed to (a paging `next` URL or Link header), resolved against the
    /// URL of the request that got the reply, as RFC 8288 says; it must lie within the base.
    pub fn resolve_link(&self, from: &Url, link: &str) -> Result<Url, String> {
        let link = link.trim();
        check_rendered(link).map_err(|why| format!("next page link '{link}' {why}"))?;
        let url = from
            .join(link)
            .map_err(|e| format!("next page link '{link}': {e}"))?;
        self.check_within(&url)
            .map_err(|why| format!("next page link '{link}' {why}"))?;
        Ok(url)
    }

    /// Same scheme, host and port (the port the scheme implies when none is written).
    pub fn same_origin(&self, url: &Url) -> bool {
        url.scheme() == self.url.scheme()
            && url.host() == self.url.host()
            && url.port_or_known_default() == self.url.port_or_known_default()
    }

    /// Why `url` is outside the base, if it is.
    pub fn check_within(&self, url: &Url) -> Result<(), String> {
        if !self.same_origin(url) {
            return Err(format!(
                "which is not on the connection's origin {} (scheme, host and port must match its baseURI)",
                self.url.origin().ascii_serialization()
            ));
        }
        if url.username() != self.url.username() || url.password() != self.url.password() {
            return Err("which names other credentials than the connection's baseURI".into());
        }
        let segments = path_segments(url);
        if !segments.starts_with(&self.segments) {
            return Err(format!(
                "whose path {} leaves the baseURI's path /{}",
                url.path(),
                self.segments.join("/")
            ));
        }
        Ok(())
    }
}

/// An absolute URL (`scheme:...`); anything else is a path under the base.
fn has_scheme(s: &str) -> bool {
    Url::parse(s).is_ok()
}

fn path_segments(url: &Url) -> Vec<String> {
    let mut segments: Vec<String> = url
        .path_segments()
        .map(|s| s.map(str::to_string).collect())
        .unwrap_or_default();
    if segments.last().is_some_and(|s| s.is_empty()) {
        segments.pop();
    }
    segments
}

/// What URL parsing would silently change: dot segments and a fragment.
fn check_rendered(s: &str) -> Result<(), String> {
    if s.contains('#') {
        return Err("which has a fragment (#...): it would cut the URL short".into());
    }
    let path = match s.find("://") {
        Some(i) => {
            let rest = &s[i + 3..];
            rest.find(['/', '\\']).map_or("", |j| &rest[j..])
        }
        None => s,
    };
    let path = path.split('?').next().unwrap_or("");
    let dotted = path.split(['/', '\\']).any(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    });
    if dotted {
        return Err("whose path has a '.' or '..' segment".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(base: &str, rel: &str) -> Result<String, String> {
        BaseUri::parse(base)?.join(rel).map(|u| u.to_string())
    }

    #[test]
    fn paths_join_under_the_base() {
        assert_eq!(
            join("http://h:1/api/", "/orders").unwrap(),
            "http://h:1/api/orders"
        );
        assert_eq!(
            join("http://h:1/api", "orders?x=1").unwrap(),
            "http://h:1/api/orders?x=1"
        );
        assert_eq!(join("http://h:1", "").unwrap(), "http://h:1/");
        assert_eq!(
            join("http://h:1/api", "http://h:1/api/x").unwrap(),
            "http://h:1/api/x"
        );
        assert_eq!(
            join("http://h/api", "HTTP://H:80/api/x").unwrap(),
            "http://h/api/x",
            "scheme, host and default port compare parsed"
        );
    }

    #[test]
    fn absolute_urls_must_have_the_base_origin_and_path() {
        for (base, rel) in [
            (
                "https://api.example.com",
                "https://api.example.com.evil.net/x",
            ),
            ("http://h:80", "http://h:8000/x"),
            ("https://h", "http://h/x"),
            ("http://h/api", "http://h/api2/x"),
            ("http://h/api", "http://h/admin"),
            ("http://h/api", "http://user:pw@h/api/x"),
            ("http://h", "http://evil.example/x"),
        ] {
            let err = join(base, rel).unwrap_err();
            assert!(err.contains(rel), "{base} + {rel}: {err}");
        }
    }

    #[test]
    fn dot_segments_and_fragments_are_refused() {
        for rel in [
            "/orders/../../admin",
            "/orders/..",
            "/orders/%2e%2E/admin",
            "/orders/.\\..\\admin",
            "/orders/1#",
            "http://h/api/orders/../x",
        ] {
            assert!(join("http://h/api", rel).is_err(), "{rel}");
        }
        // Dots inside a segment are a name, not a step up.
        assert!(join("http://h/api", "/files/a..b/.hidden").is_ok());
        // A dot in the query is not a path segment.
        assert!(join("http://h/api", "/x?path=../y").is_ok());
    }

    #[test]
    fn links_resolve_against_the_request_and_stay_in_the_base() {
        let base = BaseUri::parse("http://h/api").unwrap();
        let from = Url::parse("http://h/api/items?page=1").unwrap();
        let next = |l: &str| base.resolve_link(&from, l).map(|u| u.to_string());
        assert_eq!(next("?page=2").unwrap(), "http://h/api/items?page=2");
        assert_eq!(
            next("/api/items?page=2").unwrap(),
            "http://h/api/items?page=2"
        );
        assert_eq!(
            next("http://h/api/items?page=2").unwrap(),
            "http://h/api/items?page=2"
        );
        assert!(next("/other").is_err());
        assert!(next("//evil.example/api/items").is_err());
        assert!(next("https://h/api/items").is_err(), "no scheme change");
    }
}
