//! Property tests: whatever users or sources throw at the parsers, templates and conditions,
//! Sluice answers with a value or a clear error, never a panic.

use futures::StreamExt;
use percent_encoding::percent_decode_str;
use proptest::prelude::*;
use serde_json::{json, Value};
use sluice_core::conditions::ConditionCache;
use sluice_core::stages::base_uri::BaseUri;
use sluice_core::stages::translate::{Escape, TemplateCache};
use sluice_core::stages::trigger::readers::stream_bytes;
use sluice_model::{Bundle, FileFormat, FileType, Flow};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn flow_json_parses_or_explains(doc in json_value(), schedule in ".{0,30}", tz in ".{0,20}") {
        // Arbitrary documents, and real flows with arbitrary schedules and zones.
        let _ = serde_json::from_value::<Bundle>(doc.clone()).map(|b| b.validate());
        let _ = serde_json::from_value::<Flow>(doc).map(|f| f.validate());
        let flow: Flow = serde_json::from_value(json!({"_id": "f", "schedule": schedule, "timezone": tz, "pageGenerators": [{"_exportId": "e"}]})).unwrap();
        if let Err(e) = flow.validate() {
            prop_assert!(e.0.iter().all(|fe| !fe.field.is_empty() && !fe.message.is_empty()));
        }
    }

    #[test]
    fn templates_render_or_explain(template in ".{0,60}", record in json_value()) {
        let cache = TemplateCache::default();
        match cache.render_value(&template, &json!({"record": record})) {
            Ok(_) => {}
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }

    #[test]
    fn json_helper_output_is_always_the_value(record in json_value()) {
        let cache = TemplateCache::default();
        let out = cache.render_value("{\"v\": {{json record}}}", &json!({"record": record})).unwrap();
        let parsed: Value = serde_json::from_str(&out).unwrap();
        prop_assert_eq!(&parsed["v"], &record);
    }

    #[test]
    fn quoted_values_in_json_bodies_stay_inside_their_string(text in "\\PC{0,40}", control in "[\\x00-\\x1f\"\\\\]{0,5}") {
        let cache = TemplateCache::default();
        let value = format!("{text}{control}");
        let out = cache
            .render_value_escaped("{\"s\": \"{{record.s}}\"}", &json!({"record": {"s": value}}), Escape::JsonString)
            .unwrap();
        let parsed: Value = serde_json::from_str(&out).unwrap();
        prop_assert_eq!(parsed, json!({"s": value}));
    }

    #[test]
    fn conditions_evaluate_or_explain(expr in ".{0,40}", record in json_value()) {
        let c = ConditionCache::default();
        match c.check(&expr, &[("record", &record)]) {
            Ok(_) => {}
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }

    #[test]
    fn readers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400), kind in 0u8..3) {
        let kind = [FileType::Json, FileType::Ndjson, FileType::Csv][kind as usize];
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let items: Vec<_> = rt.block_on(async { stream_bytes(bytes, &FileFormat::of(kind)).collect().await });
        // An error, if any, is the last item and says where.
        for (i, item) in items.iter().enumerate() {
            if let Err(e) = item {
                prop_assert_eq!(i, items.len() - 1);
                prop_assert!(!e.at.is_empty());
            }
        }
    }

    #[test]
    fn a_value_in_a_uri_is_one_segment_or_one_query_value(id in "\\PC{0,24}", q in "\\PC{0,24}", raw in "[./?#&=%a-z\\\\]{0,12}") {
        let cache = TemplateCache::default();
        let base = BaseUri::parse("http://h:8080/api").unwrap();
        let id = format!("{raw}{id}");
        let rendered = cache
            .render_value_escaped("/orders/{{record.id}}?q={{record.q}}", &json!({"record": {"id": id, "q": q}}), Escape::UriComponent)
            .unwrap();
        match base.join(&rendered) {
            // Only a value that is itself a dot segment is refused.
            Err(e) => prop_assert!(id == "." || id == "..", "{id:?} -> {rendered}: {e}"),
            Ok(url) => {
                let segments: Vec<&str> = url.path_segments().unwrap().collect();
                prop_assert_eq!(segments.len(), 3, "{}", url);
                prop_assert_eq!(&segments[..2], &["api", "orders"]);
                let decoded = percent_decode_str(segments[2]).decode_utf8().unwrap();
                prop_assert_eq!(decoded.as_ref(), id.as_str());
                let pairs: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
                prop_assert_eq!(pairs, vec![("q".to_string(), q.clone())]);
                prop_assert!(url.fragment().is_none());
            }
        }
    }

    #[test]
    fn a_joined_url_never_leaves_the_base(rendered in "(https?://)?[a-z0-9.:@/\\\\%?#]{0,30}") {
        let base = BaseUri::parse("http://h:8080/api").unwrap();
        if let Ok(url) = base.join(&rendered) {
            prop_assert_eq!(url.scheme(), "http");
            prop_assert_eq!(url.host_str(), Some("h"));
            prop_assert_eq!(url.port_or_known_default(), Some(8080));
            prop_assert_eq!(url.username(), "");
            prop_assert!(url.path() == "/api" || url.path().starts_with("/api/"), "{} -> {}", rendered, url);
        }
    }

    #[test]
    fn validation_finds_exactly_the_helpers_a_render_would_miss(
        shape in 0usize..4,
        name in prop_oneof![prop::sample::select(sluice_model::validate::TEMPLATE_HELPERS.to_vec()).prop_map(String::from), "[a-z][a-zA-Z]{0,8}"],
    ) {
        let template = match shape {
            0 => format!("{{{{{name} record.x}}}}"),
            1 => format!("{{{{#{name} record.x}}}}a{{{{/{name}}}}}"),
            2 => format!("{{{{json ({name} record.x)}}}}"),
            _ => format!("{{{{{name}}}}}"),
        };
        let mut errors = sluice_model::ValidationErrors::new();
        sluice_model::validate::template(&mut errors, "t", &template);
        let refused = errors.0.iter().any(|e| e.message.contains("Unknown helper"));
        let cache = TemplateCache::default();
        let missing = matches!(
            cache.render_value(&template, &json!({"record": {"x": [1]}})),
            Err(e) if e.contains("Helper not found")
        );
        prop_assert_eq!(refused, missing, "{}: {:?}", template, errors);
    }
}
