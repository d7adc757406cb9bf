//! Bar charts as SVG files, for the readout and the backtest. A chart here is a few rectangles,
//! lines and labels, so it is written directly; a plotting crate would bring fonts and a drawing
//! back end for no better file.

/// One series of bars: a name for the legend, a colour, a value per category.
pub struct Series<'a> {
    /// Its name, in the legend.
    pub name: &'a str,
    /// A CSS colour.
    pub colour: &'a str,
    /// One value per category.
    pub values: Vec<f64>,
    /// An interval per category, drawn as a whisker (the readout's 95 % intervals).
    pub intervals: Option<Vec<(f64, f64)>>,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A bar chart of `series` over `categories`, bars of one category side by side.
/// `format` writes an axis or bar value.
pub fn bars(
    title: &str,
    categories: &[String],
    series: &[Series<'_>],
    format: impl Fn(f64) -> String,
) -> String {
    let (left, top, plot_h, bottom) = (70.0, 50.0, 260.0, 90.0);
    let group_w = (600.0 / categories.len().max(1) as f64).clamp(24.0, 120.0);
    let plot_w = group_w * categories.len().max(1) as f64;
    let (width, height) = (left + plot_w + 30.0, top + plot_h + bottom);
    let max = series
        .iter()
        .flat_map(|s| {
            s.values
                .iter()
                .copied()
                .chain(s.intervals.iter().flatten().map(|&(_, high)| high))
        })
        .fold(0.0_f64, f64::max);
    let max = if max > 0.0 { max * 1.1 } else { 1.0 };
    let y = |v: f64| top + plot_h - plot_h * (v / max);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <title>{t}</title>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{left}\" y=\"22\" font-size=\"14\" font-weight=\"bold\">{t}</text>\n",
        t = escape(title)
    );
    for i in 0..=4 {
        let v = max * f64::from(i) / 4.0;
        s.push_str(&format!(
            "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            left + plot_w,
            left - 6.0,
            y(v) + 4.0,
            escape(&format(v)),
            y = y(v)
        ));
    }
    let bar_w = (group_w * 0.8) / series.len().max(1) as f64;
    for (c, category) in categories.iter().enumerate() {
        let x0 = left + group_w * c as f64 + group_w * 0.1;
        for (k, ser) in series.iter().enumerate() {
            let v = ser.values.get(c).copied().unwrap_or(0.0);
            let x = x0 + bar_w * k as f64;
            s.push_str(&format!(
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\">\
                 <title>{}: {}</title></rect>\n",
                y(v),
                bar_w * 0.9,
                (top + plot_h - y(v)).max(0.0),
                ser.colour,
                escape(&format!("{category}, {}", ser.name)),
                escape(&format(v))
            ));
            if let Some((low, high)) = ser.intervals.as_ref().and_then(|i| i.get(c)) {
                let mid = x + bar_w * 0.45;
                s.push_str(&format!(
                    "<path d=\"M{mid:.1} {:.1}V{:.1}M{:.1} {:.1}H{:.1}M{:.1} {:.1}H{:.1}\" \
                     stroke=\"black\" stroke-width=\"1.5\" fill=\"none\"/>\n",
                    y(*low),
                    y(*high),
                    mid - 5.0,
                    y(*low),
                    mid + 5.0,
                    mid - 5.0,
                    y(*high),
                    mid + 5.0
                ));
            }
        }
        let lx = x0 + group_w * 0.4;
        let ly = top + plot_h + 14.0;
        s.push_str(&format!(
            "<text x=\"{lx:.1}\" y=\"{ly:.1}\" text-anchor=\"end\" \
             transform=\"rotate(-40 {lx:.1} {ly:.1})\">{}</text>\n",
            escape(category)
        ));
    }
    s.push_str(&format!(
        "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{b:.1}\" y2=\"{b:.1}\" stroke=\"black\"/>\n",
        left + plot_w,
        b = top + plot_h
    ));
    for (k, ser) in series.iter().enumerate() {
        let x = left + 150.0 * k as f64;
        s.push_str(&format!(
            "<rect x=\"{x:.1}\" y=\"30\" width=\"10\" height=\"10\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"39\">{}</text>\n",
            ser.colour,
            x + 14.0,
            escape(ser.name)
        ));
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_well_formed_and_escapes_its_labels() {
        let svg = bars(
            "A <b> & c",
            &["x".into(), "y\"".into()],
            &[Series {
                name: "n",
                colour: "#369",
                values: vec![1.0, 2.0],
                intervals: Some(vec![(0.5, 1.5), (1.0, 3.0)]),
            }],
            |v| format!("{v:.1}"),
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("A &lt;b&gt; &amp; c") && svg.contains("y&quot;"));
        assert_eq!(svg.matches("<rect").count(), 1 + 2 + 1);
    }
}
