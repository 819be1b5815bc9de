//! Every helper rendered through a real template registry, as a body or URI would be.

use crate::stages::translate::{Escape, TemplateCache};
use serde_json::{json, Value};

fn record() -> Value {
    json!({"now": "2026-03-08T12:34:56.789Z", "record": {
        "name": "ann lee", "email": "Ann@Example.com", "qty": 3, "price": "19.99",
        "placed": "2025-03-26T12:34:56Z", "us": "03/26/2025", "items": [2, 5, 7, 8, 9],
        "tags": ["vip", "new"], "empty": "", "list": [], "zero": 0, "payload": "{\"a\":{\"b\":1}}",
        "text": "Order ID: 12345, then 67890", "sku": "ABC-123 45"}})
}

fn render(template: &str) -> Result<String, String> {
    TemplateCache::default().render_value(template, &record())
}

fn ok(template: &str) -> String {
    render(template).unwrap_or_else(|e| panic!("{template}: {e}"))
}

#[test]
fn date_helpers() {
    assert_eq!(
        ok("{{dateFormat \"MM-DD-YYYY hh:mm A\" record.placed}}"),
        "03-26-2025 12:34 PM"
    );
    assert_eq!(
        ok("{{dateFormat \"YYYY-MM-DD HH:mm Z\" record.placed \"\" \"America/New_York\"}}"),
        "2025-03-26 08:34 -04:00"
    );
    assert_eq!(
        ok("{{dateFormat \"YYYY-MM-DD\" record.us \"MM/DD/YYYY\"}}"),
        "2025-03-26"
    );
    // A date without an offset is read in the zone given.
    assert_eq!(
        ok("{{dateFormat \"\" record.us \"MM/DD/YYYY\" \"Europe/Berlin\"}}"),
        "2025-03-26T00:00:00.000+01:00"
    );
    assert_eq!(
        ok("{{dateAdd record.placed \"86400000\"}}"),
        "2025-03-27T12:34:56.000Z"
    );
    assert_eq!(
        ok("{{dateAdd record.placed -3600000}}"),
        "2025-03-26T11:34:56.000Z"
    );
    // `timestamp` is the page's `now`, not the wall clock, so a page renders the same twice.
    assert_eq!(ok("{{timestamp}}"), "2026-03-08T12:34:56.789Z");
    assert_eq!(
        ok("{{timestamp \"YYYY-MM-DD HH:mm\" \"Asia/Tokyo\"}}"),
        "2026-03-08 21:34"
    );
    let e = render("{{dateFormat \"YYYY\" record.name}}").unwrap_err();
    assert!(
        e.contains("dateFormat: 'ann lee' is not an ISO 8601 date"),
        "{e}"
    );
    assert!(render("{{timestamp \"YYYY\" \"Mars/Olympus\"}}")
        .unwrap_err()
        .contains("Unknown time zone"));
}

#[test]
fn math_helpers() {
    assert_eq!(ok("{{add 2 \"5\"}}"), "7");
    assert_eq!(ok("{{add 1 2 3.5}}"), "6.5");
    assert_eq!(ok("{{subtract 6 3}}"), "3");
    assert_eq!(ok("{{multiply record.qty record.price}}"), "59.97");
    assert_eq!(ok("{{divide \"2002\" 100}}"), "20.02");
    assert_eq!(ok("{{modulo 7 3}}"), "1");
    assert_eq!(ok("{{round \"29.77\"}}"), "30");
    assert_eq!(ok("{{round 2.345 2}}"), "2.35");
    assert_eq!(ok("{{floor 22.44}}"), "22");
    assert_eq!(ok("{{ceil \"45.02\"}}"), "46");
    assert_eq!(ok("{{abs \"-123\"}}"), "123");
    assert_eq!(ok("{{toFixed 123.456789 4}}"), "123.4568");
    assert_eq!(ok("{{toFixed 12.5 2}}"), "12.50");
    assert_eq!(ok("{{sum record.items}}"), "31");
    assert_eq!(ok("{{sum 1 2}}"), "3");
    assert_eq!(ok("{{avg 2 \"5\" 2}}"), "3");
    assert_eq!(ok("{{avg record.items}}"), "6.2");
    assert!(render("{{divide 1 0}}")
        .unwrap_err()
        .contains("divide: cannot divide 1 by zero"));
    assert!(render("{{add record.name 1}}")
        .unwrap_err()
        .contains("'ann lee' is not a number"));
}

#[test]
fn string_helpers() {
    assert_eq!(
        ok("{{replace \"these & those\" \"&\" \"and\"}}"),
        "these and those"
    );
    assert_eq!(ok("{{split \"Hillary-Ann-Swank\" \"-\" 1}}"), "Ann");
    assert_eq!(ok("{{split record.name \" \"}}"), "ann");
    assert_eq!(ok("{{split \"a-b-c\" \"-\" -1}}"), "c");
    assert_eq!(
        ok("{{join \"/\" \"root\" record.tags \"logo.png\"}}"),
        "root/vip/new/logo.png"
    );
    assert_eq!(ok("{{substring \"Celigo\" 1 4}}"), "eli");
    assert_eq!(ok("{{substring \"Grüße\" 2}}"), "üße");
    assert_eq!(
        ok("[{{trim \"  x  \"}}][{{trimLeft \" x \"}}][{{trimRight \" x \"}}]"),
        "[x][x ][ x]"
    );
    assert_eq!(ok("{{padLeft \"CUST123\" 10 \"0\"}}"), "000CUST123");
    assert_eq!(ok("{{padRight \"XYZ\" 6 \"*\"}}"), "XYZ***");
    assert_eq!(ok("{{padLeft \"long\" 2}}"), "long");
    assert_eq!(ok("{{capitalize record.name}}"), "Ann lee");
    assert_eq!(ok("{{capitalizeAll record.name}}"), "Ann Lee");
    assert_eq!(ok("{{truncate \"abcdef\" 3 \"...\"}}"), "abc...");
    assert_eq!(ok("{{truncate \"abc\" 3 \"...\"}}"), "abc");
    assert_eq!(ok("{{truncateWords \"foo bar baz\" 2}}"), "foo bar…");
    assert_eq!(ok("{{regexMatch record.text \"[0-9]{5}\"}}"), "12345");
    assert_eq!(ok("{{regexMatch record.text \"[0-9]{5}\" 1}}"), "67890");
    assert_eq!(
        ok("{{regexMatch record.email \"example\" 0 \"i\"}}"),
        "Example"
    );
    assert_eq!(
        ok("{{regexReplace record.sku \"\" \"[ -]\" \"g\"}}"),
        "ABC12345"
    );
    assert_eq!(
        ok("{{regexReplace \"2025-03-26\" \"$3.$2.$1\" \"([0-9]+)-([0-9]+)-([0-9]+)\"}}"),
        "26.03.2025"
    );
    assert_eq!(ok("{{regexSearch \"$1499.95\" \"[.]\"}}"), "5");
    // handlebars string literals take no backslash: docs/helpers.md says to write [0-9].
    assert!(render("{{regexMatch \"a1\" \"\\d\"}}")
        .unwrap_err()
        .contains("invalid template"));
    assert_eq!(ok("{{regexSearch \"abc\" \"z\"}}"), "-1");
    assert!(render("{{regexMatch \"a\" \"(\"}}")
        .unwrap_err()
        .contains("invalid regular expression"));
    assert_eq!(
        ok("{{uppercase (split record.name \" \" 1)}}"),
        "LEE",
        "composes as a subexpression"
    );
}

#[test]
fn encoding_helpers() {
    assert_eq!(
        ok("{{base64Encode \"jane.doe@example.com\"}}"),
        "amFuZS5kb2VAZXhhbXBsZS5jb20="
    );
    assert_eq!(
        ok("{{base64Decode \"U29tZSBlbmNvZGVkIHZhbHVl\"}}"),
        "Some encoded value"
    );
    assert!(render("{{base64Decode \"***\"}}")
        .unwrap_err()
        .contains("is not base64"));
    assert_eq!(
        ok("{{encodeURI \"overseas order flow/a?b=c\"}}"),
        "overseas%20order%20flow/a?b=c"
    );
    assert_eq!(
        ok("{{decodeURI \"overseas%20order%20flow\"}}"),
        "overseas order flow"
    );
    assert_eq!(
        ok("{{#with (jsonParse record.payload)}}{{a.b}}{{/with}}"),
        "1"
    );
    assert_eq!(ok("{{jsonSerialize record.tags}}"), "[\"vip\",\"new\"]");
}

#[test]
fn hashing_helpers() {
    // Known digests of "HelloWorld" and RFC 4231 test case 2 for HMAC-SHA256.
    assert_eq!(
        ok("{{hash \"sha256\" \"hex\" \"HelloWorld\"}}"),
        "872e4e50ce9990d8b041330c47c9ddd11bec6b503ae9386a99da8584e9bb12c4"
    );
    assert_eq!(
        ok("{{hash \"md5\" \"hex\" \"HelloWorld\"}}"),
        "68e109f0f40ca72a15e05cc22786f8e6"
    );
    assert_eq!(
        ok("{{hash \"sha1\" \"hex\" \"HelloWorld\"}}"),
        "db8ac1c259eb89d4a131b253bacfca5f319d54f2"
    );
    assert_eq!(
        ok("{{hash \"sha256\" \"base64\" \"HelloWorld\"}}"),
        "hy5OUM6ZkNiwQTMMR8nd0Rvsa1A66ThqmdqFhOm7EsQ="
    );
    assert_eq!(
        ok("{{hmac \"sha256\" \"Jefe\" \"hex\" \"what do ya want for nothing?\"}}"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(
        ok("{{hmac \"sha256\" \"SmVmZQ==\" \"hex\" \"what do ya want for nothing?\" \"base64\"}}"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(
        ok("{{hmac \"md5\" \"Jefe\" \"hex\" \"what do ya want for nothing?\"}}"),
        "750c783e6ab0b503eaa86e310a5db738"
    );
    assert_eq!(
        ok("{{hmac \"sha1\" \"Jefe\" \"hex\" \"what do ya want for nothing?\"}}"),
        "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
    );
    assert!(render("{{hash \"crc32\" \"hex\" \"x\"}}")
        .unwrap_err()
        .contains("unknown algorithm 'crc32'"));
}

#[test]
fn logic_helpers_inline_and_as_blocks() {
    assert_eq!(
        ok("{{#compare record.qty \">\" 2}}big{{else}}small{{/compare}}"),
        "big"
    );
    assert_eq!(
        ok("{{#compare record.qty \"==\" \"3\"}}eq{{/compare}}"),
        "eq"
    );
    assert_eq!(
        ok("{{#compare record.qty \"===\" \"3\"}}eq{{else}}ne{{/compare}}"),
        "ne"
    );
    assert_eq!(
        ok("{{#compare \"b\" \"<=\" \"a\"}}y{{else}}n{{/compare}}"),
        "n"
    );
    assert!(render("{{#compare 1 \"<>\" 2}}{{/compare}}")
        .unwrap_err()
        .contains("unknown operator"));
    assert_eq!(
        ok("{{#contains record.tags \"vip\"}}VIP{{else}}-{{/contains}}"),
        "VIP"
    );
    assert_eq!(
        ok("{{#contains record.text \"12345\"}}found{{/contains}}"),
        "found"
    );
    assert_eq!(
        ok("{{#isEmpty record.list}}none{{else}}some{{/isEmpty}}"),
        "none"
    );
    assert_eq!(ok("{{#isEmpty record.missing}}none{{/isEmpty}}"), "none");
    assert_eq!(
        ok("{{#isEmpty record.tags}}none{{else}}some{{/isEmpty}}"),
        "some"
    );
    assert_eq!(
        ok("{{#and record.name record.qty}}both{{else}}no{{/and}}"),
        "both"
    );
    assert_eq!(
        ok("{{#and record.name record.zero}}both{{else}}no{{/and}}"),
        "no"
    );
    assert_eq!(
        ok("{{#or record.empty record.zero}}any{{else}}none{{/or}}"),
        "none"
    );
    assert_eq!(
        ok("{{#not record.list}}falsy{{else}}truthy{{/not}}"),
        "truthy",
        "[] is true, as in JavaScript"
    );
    assert_eq!(
        ok("{{and true 1}} {{or false 0}} {{not \"\"}}"),
        "true false true"
    );
    assert_eq!(
        ok("{{#if (and record.name (not record.empty))}}yes{{/if}}"),
        "yes"
    );
}

#[test]
fn helper_output_is_escaped_where_it_lands() {
    let cache = TemplateCache::default();
    let data = json!({"record": {"q": "a\"b/c d"}});
    let json_body = cache
        .render_value_escaped("{\"v\": \"{{trim record.q}}\"}", &data, Escape::JsonString)
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&json_body).unwrap()["v"],
        "a\"b/c d"
    );
    let uri = cache
        .render_value_escaped("/x/{{trim record.q}}", &data, Escape::UriComponent)
        .unwrap();
    assert_eq!(uri, "/x/a%22b%2Fc%20d");
}

#[test]
fn strict_mode_makes_a_missing_field_an_error() {
    let cache = TemplateCache::default();
    let data = json!({"record": {"a": "x"}});
    let ctx = handlebars::Context::wraps(&data).unwrap();
    let strict = |t: &str| cache.render_as(t, &ctx, Escape::None, true);
    assert_eq!(strict("{{record.a}}").unwrap(), "x");
    assert!(strict("{{record.b}}").is_err());
    let e = strict("{{uppercase (trim record.b)}}").unwrap_err();
    assert!(e.contains("record.b is missing (strict templates)"), "{e}");
    // Helpers that test for missing values still take them.
    assert_eq!(
        strict("{{#isEmpty record.b}}none{{/isEmpty}}").unwrap(),
        "none"
    );
    // Without strict mode a missing field is empty.
    assert_eq!(
        cache
            .render_as("[{{trim record.b}}]", &ctx, Escape::None, false)
            .unwrap(),
        "[]"
    );
}

#[test]
fn every_helper_is_known_to_validation_and_documented() {
    let docs = include_str!("../../../../docs/helpers.md");
    for name in super::names() {
        assert!(
            sluice_model::validate::TEMPLATE_HELPERS.contains(&name),
            "{name} is missing from TEMPLATE_HELPERS, so `sluice validate` would refuse it"
        );
        assert!(
            docs.contains(&format!("| `{name}` |")),
            "{name} has no row in docs/helpers.md"
        );
    }
}
