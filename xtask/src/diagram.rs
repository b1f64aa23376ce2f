//! `cargo xtask diagram`: draws docs/concepts.svg, the picture of multi-task learning
//! beside meta-learning used in docs/concepts.md. Plain SVG text, no dependencies.

use crate::cmd::{workspace_root, Result};
use std::fmt::Write as _;

struct Svg(String);

impl Svg {
    fn new(width: u32, height: u32) -> Self {
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="13">"#
        );
        s.push_str(
            r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#444"/></marker></defs>
<rect width="100%" height="100%" fill="white"/>
"##,
        );
        Svg(s)
    }

    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str, label: &str) {
        let _ = writeln!(
            self.0,
            r##"<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="8" fill="{fill}" stroke="#333"/>"##
        );
        for (i, line) in label.lines().enumerate() {
            let n = label.lines().count() as f64;
            let ty = y + h / 2.0 + (i as f64 - (n - 1.0) / 2.0) * 16.0 + 4.5;
            let _ =
                writeln!(self.0, r#"<text x="{}" y="{ty}" text-anchor="middle">{line}</text>"#, x + w / 2.0);
        }
    }

    fn arrow(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, dashed: bool) {
        let dash = if dashed { r#" stroke-dasharray="6 4""# } else { "" };
        let _ = writeln!(
            self.0,
            r##"<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#444" stroke-width="1.6" marker-end="url(#arrow)"{dash}/>"##
        );
    }

    fn text(&mut self, x: f64, y: f64, size: u32, bold: bool, text: &str) {
        let weight = if bold { r#" font-weight="bold""# } else { "" };
        let _ = writeln!(self.0, r#"<text x="{x}" y="{y}" font-size="{size}"{weight}>{text}</text>"#);
    }

    fn finish(mut self) -> String {
        self.0.push_str("</svg>\n");
        self.0
    }
}

/// The diagram as SVG text.
pub fn concepts_svg() -> String {
    let mut svg = Svg::new(980, 430);
    // Left: multi-task learning.
    svg.text(20.0, 30.0, 17, true, "Multi-task learning: one model, a fixed set of tasks");
    svg.rect(30.0, 170.0, 90.0, 50.0, "#eef3fb", "input x");
    svg.rect(160.0, 155.0, 120.0, 80.0, "#cfe0f5", "shared\nencoder f(x; θ)");
    svg.arrow(120.0, 195.0, 160.0, 195.0, false);
    for (i, y) in [70.0, 165.0, 260.0].into_iter().enumerate() {
        svg.rect(330.0, y, 100.0, 50.0, "#fde9d2", &format!("head h{}", i + 1));
        svg.arrow(280.0, 195.0, 330.0, y + 25.0, false);
        svg.rect(460.0, y + 5.0, 60.0, 40.0, "#fff", &format!("L{}", i + 1));
        svg.arrow(430.0, y + 25.0, 460.0, y + 25.0, false);
    }
    svg.text(30.0, 350.0, 13, false, "θ ← θ − η · combine(L1..LT or ∇L1..∇LT)   (a weighting strategy:");
    svg.text(30.0, 368.0, 13, false, "EW, UW, MGDA, PCGrad, CAGrad, Nash-MTL, …)");
    svg.text(
        30.0,
        395.0,
        13,
        false,
        "Goal: every task of the set does well (generalisation, less data each).",
    );
    // Right: meta-learning.
    svg.text(560.0, 30.0, 17, true, "Meta-learning: learn to adapt to new tasks");
    svg.rect(570.0, 60.0, 130.0, 50.0, "#cfe0f5", "meta-parameters\nθ");
    for (i, x) in [560.0, 690.0, 820.0].into_iter().enumerate() {
        let label = if i == 2 { "new task (support)" } else { "task i (support)" };
        svg.rect(x, 170.0, 120.0, 45.0, "#eef7ee", label);
        svg.arrow(635.0, 110.0, x + 60.0, 170.0, i == 2);
        let fast = if i == 2 { "adapted φ*" } else { "φᵢ = θ − α∇Lᵢ(θ)" };
        svg.rect(x, 250.0, 120.0, 45.0, "#fde9d2", fast);
        svg.arrow(x + 60.0, 215.0, x + 60.0, 250.0, i == 2);
    }
    svg.text(560.0, 335.0, 13, false, "inner loop: adapt to each task's support set");
    svg.text(560.0, 353.0, 13, false, "outer loop: θ ← θ − β ∇θ Σᵢ Lᵢ(φᵢ(θ)) on each task's query set");
    svg.text(560.0, 395.0, 13, false, "Goal: a new task is learned well from a few examples.");
    svg.0.push_str(r##"<line x1="540" y1="15" x2="540" y2="415" stroke="#bbb" stroke-dasharray="4 4"/>"##);
    svg.0.push('\n');
    svg.finish()
}

/// Writes docs/concepts.svg.
pub fn run() -> Result {
    let path = workspace_root().join("docs/concepts.svg");
    std::fs::write(&path, concepts_svg())?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn is_well_formed_enough() {
        let svg = super::concepts_svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    }
}
