//! The JUnit XML report (`weir test --junit FILE`), as CI systems read it:
//! one `<testsuite>` per test file, one `<testcase>` per case, a
//! `<failure>` with the problems for a failed case, and an `<error>` case for
//! a test file that could not be read.

use std::fmt::Write as _;

use super::Report;

/// The report as JUnit XML.
pub fn render(report: &Report) -> String {
    let mut files: Vec<&std::path::Path> = Vec::new();
    for case in &report.cases {
        if !files.contains(&case.file.as_path()) {
            files.push(&case.file);
        }
    }
    let failures = report.cases.iter().filter(|c| !c.passed()).count();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"weir test\" tests=\"{}\" failures=\"{failures}\" errors=\"{}\" time=\"{:.3}\">",
        report.cases.len() + report.broken.len(),
        report.broken.len(),
        report.elapsed.as_secs_f64()
    );
    for file in files {
        let cases: Vec<_> = report.cases.iter().filter(|c| c.file == file).collect();
        let name = escape(&file.display().to_string());
        let time: f64 = cases.iter().map(|c| c.elapsed.as_secs_f64()).sum();
        let failed = cases.iter().filter(|c| !c.passed()).count();
        let _ = writeln!(xml, "  <testsuite name=\"{name}\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" time=\"{time:.3}\">", cases.len());
        for case in cases {
            let _ = write!(xml, "    <testcase classname=\"{name}\" name=\"{}\" time=\"{:.3}\"", escape(&case.name), case.elapsed.as_secs_f64());
            if case.passed() {
                xml.push_str("/>\n");
            } else {
                let first = case.problems.first().map(|p| p.lines().next().unwrap_or_default()).unwrap_or_default();
                let _ = writeln!(xml, ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>", escape(first), escape(&case.problems.join("\n")));
            }
        }
        xml.push_str("  </testsuite>\n");
    }
    for (file, error) in &report.broken {
        let name = escape(&file.display().to_string());
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{name}\" tests=\"1\" failures=\"0\" errors=\"1\">\n    <testcase classname=\"{name}\" name=\"(test file)\">\n      <error message=\"the test file cannot be read\">{}</error>\n    </testcase>\n  </testsuite>",
            escape(error)
        );
    }
    xml.push_str("</testsuites>\n");
    xml
}

/// Escapes text for XML attributes and content; drops the control
/// characters XML 1.0 cannot carry at all.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::super::CaseReport;
    use super::*;

    #[test]
    fn failures_and_broken_files_are_reported() {
        let case = |name: &str, problems: Vec<String>| CaseReport {
            file: PathBuf::from("pipelines/tests/orders.test.toml"),
            name: name.to_owned(),
            problems,
            updated: None,
            elapsed: Duration::from_millis(3),
            pipeline: "orders".into(),
            figures: Vec::new(),
        };
        let report = Report {
            cases: vec![case("ok", vec![]), case("a <bad> \"one\"", vec!["output 1: payload at /a: expected 1, got 2".into()])],
            broken: vec![(PathBuf::from("x.test.toml"), "x.test.toml:3:1: case[0].nme: unknown key".into())],
            elapsed: Duration::from_millis(10),
        };
        let xml = render(&report);
        assert!(xml.contains("<testsuites name=\"weir test\" tests=\"3\" failures=\"1\" errors=\"1\""), "{xml}");
        assert!(xml.contains("<testcase classname=\"pipelines/tests/orders.test.toml\" name=\"ok\" time=\"0.003\"/>"), "{xml}");
        assert!(xml.contains("name=\"a &lt;bad&gt; &quot;one&quot;\""), "{xml}");
        assert!(xml.contains("<failure message=\"output 1: payload at /a: expected 1, got 2\">"), "{xml}");
        assert!(
            xml.contains("<error message=\"the test file cannot be read\">x.test.toml:3:1: case[0].nme: unknown key</error>"),
            "{xml}"
        );
    }
}
