//! HTTP exports: the request per page, paging (page, skip, token, Link header, next URL),
//! `resourcePath` to the records, and delta windows.

use crate::stages::base_uri::BaseUri;
use crate::stages::deliver;
use crate::stages::translate::{body_escape, Escape};
use crate::{Error, Result, Sluice};
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sluice_model::validate::normalize_json_path;
use sluice_model::{Connection, Export, PagingMethod, RenderedRequest, Reply};

/// The delta window of a run: `{{lastExportDateTime}}` and `{{currentExportDateTime}}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeltaWindow {
    pub last_export_date_time: Option<DateTime<Utc>>,
    pub current_export_date_time: Option<DateTime<Utc>>,
}

/// Guard against servers that never stop paging.
const DEFAULT_MAX_PAGES: u64 = 10_000;

/// Where paging stands: what the next request asks for. Serializable, so a trigger that
/// runs short of time can hand it to its continuation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// Replies read so far.
    n: u64,
    page: u64,
    skip: u64,
    token: Option<String>,
    next_url: Option<String>,
    done: bool,
}

impl Cursor {
    /// The start of the export's paging.
    pub fn start(export: &Export) -> Cursor {
        let paging = export.http.as_ref().and_then(|h| h.paging.as_ref());
        Cursor {
            n: 0,
            page: paging.and_then(|p| p.page).unwrap_or(1),
            skip: paging.and_then(|p| p.skip).unwrap_or(0),
            token: None,
            next_url: None,
            done: false,
        }
    }

    /// True when no request is left to make.
    pub fn is_done(&self) -> bool {
        self.done
    }
}

/// Fetches the export page by page from `cursor`; each item is the records of one reply
/// and the cursor after it. A wrong `resourcePath` is an error, not zero records.
pub fn fetch_pages<'a>(
    sluice: &'a Sluice,
    export: &'a Export,
    connection: &'a Connection,
    window: DeltaWindow,
    cursor: Cursor,
) -> BoxStream<'a, Result<(Vec<Value>, Cursor)>> {
    Box::pin(futures::stream::unfold(cursor, move |mut c| {
        let window = window.clone();
        async move {
            if c.done {
                return None;
            }
            match next_page(sluice, export, connection, &window, &mut c).await {
                Ok(Some(records)) => Some((Ok((records, c.clone())), c)),
                Ok(None) => None,
                Err(e) => {
                    c.done = true;
                    Some((Err(e), c))
                }
            }
        }
    }))
}

async fn next_page(
    sluice: &Sluice,
    export: &Export,
    connection: &Connection,
    window: &DeltaWindow,
    c: &mut Cursor,
) -> Result<Option<Vec<Value>>> {
    let http = export
        .http
        .as_ref()
        .ok_or_else(|| Error::invalid("http", "an http export needs an http section"))?;
    let paging = http.paging.as_ref();
    if c.n
        >= paging
            .and_then(|p| p.max_pages)
            .unwrap_or(DEFAULT_MAX_PAGES)
    {
        return Ok(None);
    }
    let format = export.delta.as_ref().and_then(|d| d.format());
    let written = |d: DateTime<Utc>| match &format {
        Some(f) => f.format(d, chrono_tz::UTC),
        None => sluice_model::time::format(&d),
    };
    let ctx = json!({
        "lastExportDateTime": window.last_export_date_time.map(written),
        "currentExportDateTime": window.current_export_date_time.map(written),
        "export": {"http": {"paging": {"page": c.page, "skip": c.skip, "token": c.token}}},
    });
    let templates = &sluice.caches.templates;
    let base_uri = BaseUri::parse(connection.http.as_ref().map_or("", |h| h.base_uri.as_str()))
        .map_err(|e| Error::invalid("http.baseURI", e))?;
    let url = match c.next_url.take() {
        // Checked against the base when it was read from the reply.
        Some(u) => u,
        None => {
            let uri_template = match (c.n, paging.and_then(|p| p.relative_uri.as_deref())) {
                (n, Some(later)) if n > 0 => later,
                _ => http.relative_uri.as_str(),
            };
            let uri = templates
                .render_value_escaped(uri_template, &ctx, Escape::UriComponent)
                .map_err(|e| Error::invalid("http.relativeURI", e))?;
            base_uri
                .join(&uri)
                .map_err(|e| Error::invalid("http.relativeURI", e))?
                .to_string()
        }
    };
    let mut headers: Vec<(String, String)> = connection
        .http
        .as_ref()
        .map(|h| {
            h.headers
                .iter()
                .map(|hv| (hv.name.clone(), hv.value.clone()))
                .collect()
        })
        .unwrap_or_default();
    for hv in &http.headers {
        // `secret:NAME` stays as written; deliver resolves it when sending.
        let value = if sluice_model::is_secret_reference(&hv.value) {
            hv.value.clone()
        } else {
            templates
                .render_value(&hv.value, &ctx)
                .map_err(|e| Error::invalid("http.headers", e))?
        };
        headers.push((hv.name.clone(), value));
    }
    let escape = body_escape(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let body = http
        .body
        .as_deref()
        .map(|b| templates.render_value_escaped(b, &ctx, escape))
        .transpose()
        .map_err(|e| Error::invalid("http.body", e))?;
    let request = RenderedRequest {
        method: http.method.to_ascii_uppercase(),
        url: url.clone(),
        headers,
        body,
    };
    let reply = deliver::send_request(sluice, connection, &http.headers, &request)
        .await
        .map_err(|(_, m)| Error::Internal(anyhow::anyhow!("GET {url}: {m}")))?;
    c.n += 1;
    if paging.and_then(|p| p.last_page_status_code) == Some(reply.status) {
        return Ok(None);
    }
    if !(200..300).contains(&reply.status) {
        return Err(Error::Internal(anyhow::anyhow!(
            "GET {url} answered {}: {}",
            reply.status,
            excerpt(&reply.body)
        )));
    }
    let records = records_of(&reply.body, http.resource_path.as_deref())?;
    match paging.map(|p| p.method) {
        None => c.done = true,
        Some(PagingMethod::Page) => {
            c.page += 1;
            if records.is_empty() {
                return Ok(None);
            }
        }
        Some(PagingMethod::Skip) => {
            c.skip += records.len() as u64;
            if records.is_empty() {
                return Ok(None);
            }
        }
        Some(PagingMethod::Token) => {
            let token = select_text(&reply, paging.and_then(|p| p.path.as_deref()).unwrap_or(""))?;
            c.done = token.is_none();
            c.token = token;
        }
        Some(PagingMethod::Url) => {
            let next = select_text(&reply, paging.and_then(|p| p.path.as_deref()).unwrap_or(""))?;
            c.next_url = next.map(|n| follow(&base_uri, &url, &n)).transpose()?;
            c.done = c.next_url.is_none();
        }
        Some(PagingMethod::Linkheader) => {
            let next = reply
                .headers
                .get("link")
                .and_then(|v| v.as_str())
                .and_then(next_link);
            c.next_url = next.map(|n| follow(&base_uri, &url, &n)).transpose()?;
            c.done = c.next_url.is_none();
        }
    }
    Ok(Some(records))
}

fn excerpt(body: &Value) -> String {
    let s = match body {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    s.chars().take(300).collect()
}

/// The next page's URL: `link` resolved against the request that answered it, and within
/// the connection's baseURI, so paging cannot lead the export's credentials elsewhere.
fn follow(base: &BaseUri, from: &str, link: &str) -> Result<String> {
    let from = url::Url::parse(from)
        .map_err(|e| Error::Internal(anyhow::anyhow!("request URL {from}: {e}")))?;
    base.resolve_link(&from, link)
        .map(|u| u.to_string())
        .map_err(|e| Error::Internal(anyhow::anyhow!("{e}")))
}

/// The records of a reply: the array at `resourcePath` (an object there is one record), or
/// the whole body when no path is set. A path that finds nothing is an error.
pub fn records_of(body: &Value, resource_path: Option<&str>) -> Result<Vec<Value>> {
    let found = match resource_path {
        None => body.clone(),
        Some(p) => {
            let path = serde_json_path::JsonPath::parse(&normalize_json_path(p))
                .map_err(|e| Error::invalid("http.resourcePath", e.to_string()))?;
            match path.query(body).first() {
                Some(v) => (*v).clone(),
                None => {
                    let keys: Vec<String> = body
                        .as_object()
                        .map(|m| m.keys().cloned().collect())
                        .unwrap_or_default();
                    return Err(Error::invalid(
                        "http.resourcePath",
                        format!(
                            "'{p}' selects nothing in the reply (its top-level fields: {})",
                            keys.join(", ")
                        ),
                    ));
                }
            }
        }
    };
    match found {
        Value::Array(items) => Ok(items),
        Value::Null => Ok(vec![]),
        obj @ Value::Object(_) => Ok(vec![obj]),
        other => Err(Error::invalid(
            "http.resourcePath",
            format!("selects {other}, not records"),
        )),
    }
}

fn select_text(reply: &Reply, path: &str) -> Result<Option<String>> {
    let doc = reply.body.clone();
    let p = serde_json_path::JsonPath::parse(&normalize_json_path(path))
        .map_err(|e| Error::invalid("http.paging.path", e.to_string()))?;
    Ok(match p.query(&doc).first() {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

/// The `rel="next"` target of a Link header.
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        is_next.then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_next() {
        assert_eq!(
            next_link(
                r#"<https://x/items?page=2>; rel="next", <https://x/items?page=9>; rel="last""#
            ),
            Some("https://x/items?page=2".into())
        );
        assert_eq!(next_link(r#"<https://x/items?page=9>; rel="last""#), None);
    }

    #[test]
    fn resource_path_finds_records_or_says_why_not() {
        let body = json!({"data": {"items": [{"a": 1}, {"a": 2}]}, "meta": {}});
        assert_eq!(records_of(&body, Some("data.items")).unwrap().len(), 2);
        assert_eq!(
            records_of(&body, Some("$.data")).unwrap().len(),
            1,
            "an object is one record"
        );
        let err = records_of(&body, Some("data.records"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("selects nothing") && err.contains("data, meta"),
            "{err}"
        );
        assert_eq!(records_of(&json!([1, 2, 3]), None).unwrap().len(), 3);
    }
}
