//! The self-contained HTML timeline: one file, all code and data inline, no network request of any kind.
//!
//! Data is embedded as one JSON document in a non-executable `<script type="application/json">` element,
//! with `<`, `>` and `&` escaped inside it, and read by the page's script with `JSON.parse`; the page
//! only ever puts log strings into the DOM with `textContent` or onto the canvas with `fillText`. A
//! Content-Security-Policy allows nothing but the page's own script (by hash) and inline styles, so even
//! a bug in the escaping could neither run injected script nor make a request.
//!
//! Spans are packed per lane as base64 LEB128 varint columns (start delta, duration, depth, name index,
//! fields), with every string in one table: about 7 bytes per span with one numeric field.

use std::collections::HashMap;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::json::script_safe;
use crate::log::Fields;
use crate::pack::{base64, varint};
use crate::stalls::{self, Analysis};
use crate::stats::{self, NameSummary};
use crate::timeline::Timeline;

const PAGE_JS: &str = include_str!("page.js");
const PAGE_CSS: &str = include_str!("page.css");

/// Renders `tl` as a complete HTML document titled `title`.
pub fn render(tl: &Timeline, title: &str) -> String {
    let analysis = stalls::analyse(tl);
    let summary = stats::summarize(tl);
    let data = script_safe(&page_data(tl, &analysis, &summary, title).to_string());
    let hash = base64(&Sha256::digest(PAGE_JS.as_bytes()));
    let mut html = String::with_capacity(data.len() + PAGE_JS.len() + PAGE_CSS.len() + 4096);
    html.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    html.push_str(&format!(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'; img-src data:\">\n"
    ));
    html.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>");
    html.push_str(&escape_html(title));
    html.push_str("</title>\n<style>");
    html.push_str(PAGE_CSS);
    html.push_str("</style></head>\n<body>\n");
    html.push_str(BODY);
    html.push_str("<script type=\"application/json\" id=\"data\">");
    html.push_str(&data);
    html.push_str("</script>\n<script>");
    html.push_str(PAGE_JS);
    html.push_str("</script>\n</body></html>\n");
    html
}

const BODY: &str = r#"<header><h1 id="title"></h1><input id="search" type="search" placeholder="search span names (Enter: next)" autocomplete="off"><span id="found"></span>
<span class="help">wheel or W/S: zoom · drag or A/D: pan · 0: reset · double-click: zoom to span</span></header>
<section id="diagnosis"><strong>Verdict: </strong><span id="verdict"></span> <details id="evidence-box"><summary>evidence (click a span to zoom to it)</summary><ol id="evidence"></ol></details></section>
<div id="legend"><span class="key busy">work span (one colour per name)</span> <span class="key wait">wait.* span: stalled</span> <span class="key expected">expected wait (motion, exposure, trigger, between series)</span> <span class="key gap">idle time (waits and untraced gaps)</span> <span class="key bottleneck">bottleneck lane</span> <span class="key waiter">lane waiting on it</span> <span class="key flow">&#8594; queue: released by its producer (or consumer), to the wait it ended</span> <span class="key lockflow">&#8594; lock: from the holder that released it to the waiter</span> <label><input id="flows-on" type="checkbox" checked> arrows</label></div>
<div id="status">loading…</div>
<div id="tl"><div id="spacer"></div><canvas id="cv"></canvas></div>
<div id="tip" hidden></div>
<main>
<section><h2>Stalls: biggest first</h2><ol id="stall-list"></ol><h3>Idle share per lane</h3><ul id="lane-idle"></ul></section>
<section><h2>Summary per span name</h2><table id="summary"><thead><tr><th>span / lane</th><th>count</th><th>total</th><th>mean</th><th>p95</th><th>max</th><th>share of wall</th></tr></thead><tbody></tbody></table></section>
<section><h2>Lanes</h2><ul id="lanes"></ul></section>
<section><h2>Runs</h2><table id="runs"><thead><tr><th>process</th><th>command line</th><th>started</th><th>wall</th><th>status</th><th>dropped</th><th>log</th></tr></thead><tbody></tbody></table></section>
</main>
"#;

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The string table shared by all columns.
#[derive(Default)]
struct Strings {
    index: HashMap<String, u64>,
    list: Vec<String>,
}

impl Strings {
    fn id(&mut self, s: &str) -> u64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.list.len() as u64;
        self.list.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }

    /// Fields as: count, then per field `key*3 + kind` and the value (kind 0: unsigned integer, 1: negated
    /// negative integer, 2: index of the value's text in the string table).
    fn fields(&mut self, out: &mut Vec<u8>, fields: &Fields) {
        varint(out, fields.len() as u64);
        for (k, v) in fields {
            let key = self.id(k) * 3;
            match v {
                Value::Number(n) if n.as_u64().is_some() => {
                    varint(out, key);
                    varint(out, n.as_u64().unwrap_or(0));
                }
                Value::Number(n) if n.as_i64().is_some() => {
                    varint(out, key + 1);
                    varint(out, n.as_i64().unwrap_or(0).unsigned_abs());
                }
                Value::String(s) => {
                    varint(out, key + 2);
                    let i = self.id(s);
                    varint(out, i);
                }
                other => {
                    varint(out, key + 2);
                    let i = self.id(&other.to_string());
                    varint(out, i);
                }
            }
        }
    }
}

/// Flow arrows on the page at most (the longest queue waits).
pub const FLOWS: usize = 3000;

fn page_data(tl: &Timeline, analysis: &Analysis, summary: &[NameSummary], title: &str) -> Value {
    let mut st = Strings::default();
    let rel = |t: u64| t.saturating_sub(tl.start);
    let mut procs = Vec::new();
    for (pi, p) in tl.processes.iter().enumerate() {
        let mut lanes = Vec::new();
        for (li, lane) in p.lanes.iter().enumerate() {
            let mut cols = Vec::with_capacity(lane.spans.len() * 8);
            let mut prev = 0;
            for s in &lane.spans {
                let start = rel(s.start);
                varint(&mut cols, start - prev);
                prev = start;
                varint(&mut cols, s.dur());
                varint(&mut cols, u64::from(s.depth));
                let name = st.id(&s.name);
                varint(&mut cols, name);
                st.fields(&mut cols, &s.fields);
            }
            let mut events = Vec::new();
            let mut prev = 0;
            for e in &lane.events {
                let t = rel(e.ts);
                varint(&mut events, t - prev);
                prev = t;
                let name = st.id(&e.name);
                varint(&mut events, name);
                st.fields(&mut events, &e.fields);
            }
            let mut gaps = Vec::new();
            let mut prev = 0;
            for (s, e) in analysis.highlight.get(pi).and_then(|h| h.get(li)).map(Vec::as_slice).unwrap_or(&[]) {
                let (s, e) = (rel(*s), rel(*e));
                varint(&mut gaps, s.saturating_sub(prev));
                varint(&mut gaps, e.saturating_sub(s));
                prev = s;
            }
            lanes.push(json!({
                "name": lane.name, "tid": lane.tid, "n": lane.spans.len(), "depths": lane.depths,
                "cols": base64(&cols), "ne": lane.events.len(), "events": base64(&events),
                "gaps": base64(&gaps),
            }));
        }
        let counters: Vec<Value> = p
            .counters
            .iter()
            .map(|c| {
                let mut t = Vec::new();
                let mut prev = 0;
                for (ts, _) in &c.samples {
                    let r = rel(*ts);
                    varint(&mut t, r - prev);
                    prev = r;
                }
                let v: Vec<f64> = c.samples.iter().map(|s| s.1).collect();
                json!({"name": &*c.name, "t": base64(&t), "v": v})
            })
            .collect();
        let footer = p.footer.as_ref();
        procs.push(json!({
            "label": p.label, "pid": p.header.pid, "argv": p.header.argv.join(" "),
            "started": crate::clock::Civil::from_unix_ns(p.header.start_unix_ns).human(),
            "start": rel(p.start), "wall": p.wall(),
            "status": footer.map(|f| f.status.clone()).unwrap_or_else(|| "no footer (killed or still running)".into()),
            "error": footer.and_then(|f| f.error.clone()),
            "dropped": footer.map(|f| f.dropped).unwrap_or(0),
            "path": p.path.display().to_string(),
            "lanes": lanes, "counters": counters,
        }));
    }
    let stall_top: Vec<Value> = analysis
        .top
        .iter()
        .map(|s| json!({"p": s.process, "l": s.lane, "start": rel(s.start), "dur": s.dur, "what": s.what, "text": s.text}))
        .collect();
    let stall_lanes: Vec<Value> =
        analysis.lanes.iter().map(|l| json!({"p": l.process, "l": l.lane, "share": l.share, "text": l.text})).collect();
    let d = crate::diagnose::diagnose(tl);
    let evidence: Vec<Value> = d
        .evidence
        .iter()
        .map(|e| json!({"p": e.process, "l": e.lane, "start": rel(e.start), "dur": e.end - e.start, "text": e.what}))
        .collect();
    let diagnosis = json!({
        "verdict": d.verdict,
        "bottleneck": d.bottleneck_lane.map(|(p, l)| json!([p, l])),
        "waiters": d.waiters.iter().map(|(p, l)| json!([p, l])).collect::<Vec<_>>(),
        "evidence": evidence,
    });
    // Flow arrows: [from process, from lane, from time, to process, to lane, to time, waited ns, 1 for a
    // lock (from its holder) else 0].
    let flows: Vec<Value> = crate::diagnose::flows(tl, FLOWS)
        .iter()
        .map(|f| json!([f.from.0, f.from.1, rel(f.from_ts), f.to.0, f.to.1, rel(f.to_ts), f.waited, u8::from(f.lock)]))
        .collect();
    json!({
        "diagnosis": diagnosis,
        "flows": flows,
        "expected_waits": crate::diagnose::EXPECTED_WAITS,
        "title": title,
        "wall": tl.wall(),
        "started": crate::clock::Civil::from_unix_ns(tl.start).human(),
        "strings": st.list,
        "procs": procs,
        "summary": summary,
        "stalls": {"top": stall_top, "lanes": stall_lanes},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::tests::log_with;

    #[test]
    fn hostile_strings_never_reach_markup_unescaped() {
        let evil = "</script><script>document.title='PWNED'</script><img src=x onerror=alert(1)>";
        let mut log = log_with(&[(1, evil)], &[(1, evil, 0, 10)]);
        log.spans[0].fields.push((std::sync::Arc::from(evil), json!(evil)));
        log.header.argv = vec![evil.into()];
        let html = render(&Timeline::from_logs(vec![log]), evil);
        assert_eq!(html.matches("<script").count(), 2, "only the data and code elements");
        assert_eq!(html.matches("</script>").count(), 2);
        assert!(!html.contains("<img"));
        assert!(html.contains("<title>&lt;/script&gt;"));
        let start = html.find("id=\"data\">").expect("data element") + "id=\"data\">".len();
        let end = start + html[start..].find("</script>").expect("end of data");
        let data: Value = serde_json::from_str(&html[start..end]).expect("data is JSON");
        assert!(data["strings"].as_array().expect("strings").iter().any(|s| s == evil), "round-trips intact");
    }

    #[test]
    fn csp_hash_matches_the_inline_script() {
        let html = render(&Timeline::from_logs(vec![log_with(&[(1, "main")], &[(1, "a.b", 0, 5)])]), "t");
        let hash = base64(&Sha256::digest(PAGE_JS.as_bytes()));
        assert!(html.contains(&format!("'sha256-{hash}'")));
        assert!(html.contains(&format!("<script>{PAGE_JS}</script>")));
        for banned in ["http://", "https://", "src=", "href=", "@import", "url("] {
            assert!(!html.contains(banned), "page must not reference {banned}");
        }
    }
}
