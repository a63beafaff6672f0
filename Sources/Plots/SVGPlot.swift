import Foundation

/// A small line and scatter plot written as SVG, readable in any browser (and as PNG
/// through `PNGRenderer` where librsvg is installed).
///
/// Axes may be logarithmic (base 10 ticks, or base 2 for narrow ranges, or ticks at given
/// values); series are drawn as markers, lines or dashed lines, optionally with error
/// bars, and named in a legend inside the plot's upper right corner. Labels may use a
/// little TeX-like markup, typeset with SVG text spans: `x_i` or `x_{ij}` for subscripts,
/// `x^2` or `x^{-1/2}` for superscripts.
public struct SVGPlot: Sendable {
    public enum Style: Sendable { case markers, line, dashed, lineAndMarkers }

    public struct Series: Sendable {
        public var label: String
        public var points: [(x: Double, y: Double)]
        public var style: Style
        public var color: String
        /// Per point, the low and high end of its error bar (empty: no bars).
        public var errorBars: [(low: Double, high: Double)] = []
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var xLogarithmic: Bool
    public var yLogarithmic: Bool
    /// Tick positions on the x axis (data units), e.g. the widths measured; nil: automatic.
    public var xTicks: [Double]? = nil
    public var notes: [String] = []
    public private(set) var series: [Series] = []

    public static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]

    public init(title: String, xLabel: String, yLabel: String, xLogarithmic: Bool = false, yLogarithmic: Bool = false) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.xLogarithmic = xLogarithmic
        self.yLogarithmic = yLogarithmic
    }

    /// Adds a series; points with non-finite coordinates (or non-positive on a log
    /// axis) are left out. `errorBars`, when given, has one (low, high) per point.
    public mutating func add(_ label: String, _ points: [(x: Double, y: Double)], style: Style, color: String? = nil,
                             errorBars: [(low: Double, high: Double)] = []) {
        precondition(errorBars.isEmpty || errorBars.count == points.count, "one error bar per point")
        func usable(_ x: Double, _ y: Double) -> Bool {
            x.isFinite && y.isFinite && (!xLogarithmic || x > 0) && (!yLogarithmic || y > 0)
        }
        var kept: [(x: Double, y: Double)] = [], bars: [(low: Double, high: Double)] = []
        for (index, point) in points.enumerated() where usable(point.x, point.y) {
            kept.append(point)
            if !errorBars.isEmpty { bars.append(errorBars[index]) }
        }
        series.append(Series(label: label, points: kept, style: style, color: color ?? Self.palette[series.count % Self.palette.count],
                             errorBars: bars))
    }

    /// The SVG document.
    public func render(width: Double = 720, height: Double = 460) -> String {
        let left = 84.0, right = 24.0, top = 40.0, bottom = 60.0 + Double(notes.count) * 16
        let plotWidth = width - left - right, plotHeight = height - top - bottom
        func transform(_ v: Double, log: Bool) -> Double { log ? Foundation.log10(v) : v }
        var xs: [Double] = [], ys: [Double] = []
        for s in series {
            for (index, p) in s.points.enumerated() {
                xs.append(transform(p.x, log: xLogarithmic))
                ys.append(transform(p.y, log: yLogarithmic))
                if index < s.errorBars.count {
                    for v in [s.errorBars[index].low, s.errorBars[index].high] where v.isFinite && (!yLogarithmic || v > 0) {
                        ys.append(transform(v, log: yLogarithmic))
                    }
                }
            }
        }
        if xs.isEmpty { xs = [0, 1] }
        if ys.isEmpty { ys = [0, 1] }
        var (x0, x1) = (xs.min()!, xs.max()!), (y0, y1) = (ys.min()!, ys.max()!)
        if x1 - x0 < 1e-12 { x0 -= 0.5; x1 += 0.5 }
        if y1 - y0 < 1e-12 { y0 -= 0.5; y1 += 0.5 }
        let xPad = (x1 - x0) * 0.05, yPad = (y1 - y0) * 0.08
        x0 -= xPad; x1 += xPad; y0 -= yPad; y1 += yPad
        // Room at the top for the legend inside the frame.
        let legendHeight = Double(series.count) * 18 + 10
        y1 += (y1 - y0) * min(0.45, legendHeight / max(plotHeight - legendHeight, 1))
        func px(_ x: Double) -> Double { left + (transform(x, log: xLogarithmic) - x0) / (x1 - x0) * plotWidth }
        func py(_ y: Double) -> Double { top + plotHeight - (transform(y, log: yLogarithmic) - y0) / (y1 - y0) * plotHeight }
        func f(_ v: Double) -> String { String(format: "%.2f", v) }
        let text = Self.typeset

        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(f(width))" height="\(f(height))" viewBox="0 0 \(f(width)) \(f(height))" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(f(left + plotWidth / 2))" y="24" text-anchor="middle" font-size="15">\(text(title))</text>
            <rect x="\(f(left))" y="\(f(top))" width="\(f(plotWidth))" height="\(f(plotHeight))" fill="none" stroke="#333"/>

            """
        let xTickList: [(Double, String)] = xTicks.map { values in
            values.filter { $0.isFinite && (!xLogarithmic || $0 > 0) }.map { (transform($0, log: xLogarithmic), Self.format($0)) }
                .filter { $0.0 >= x0 && $0.0 <= x1 }
        } ?? ticks(x0, x1, log: xLogarithmic)
        for (value, label) in xTickList {
            let x = left + (value - x0) / (x1 - x0) * plotWidth
            svg += "<line x1=\"\(f(x))\" y1=\"\(f(top))\" x2=\"\(f(x))\" y2=\"\(f(top + plotHeight))\" stroke=\"#e5e5e5\"/>\n"
            svg += "<text x=\"\(f(x))\" y=\"\(f(top + plotHeight + 16))\" text-anchor=\"middle\">\(text(label))</text>\n"
        }
        for (value, label) in ticks(y0, y1, log: yLogarithmic) {
            let y = top + plotHeight - (value - y0) / (y1 - y0) * plotHeight
            svg += "<line x1=\"\(f(left))\" y1=\"\(f(y))\" x2=\"\(f(left + plotWidth))\" y2=\"\(f(y))\" stroke=\"#e5e5e5\"/>\n"
            svg += "<text x=\"\(f(left - 6))\" y=\"\(f(y + 4))\" text-anchor=\"end\">\(text(label))</text>\n"
        }
        svg += "<text x=\"\(f(left + plotWidth / 2))\" y=\"\(f(top + plotHeight + 40))\" text-anchor=\"middle\">\(text(xLabel))</text>\n"
        svg += "<text transform=\"translate(20 \(f(top + plotHeight / 2))) rotate(-90)\" text-anchor=\"middle\">\(text(yLabel))</text>\n"
        for s in series {
            let points = s.points.map { "\(f(px($0.x))),\(f(py($0.y)))" }.joined(separator: " ")
            for (index, p) in s.points.enumerated() where index < s.errorBars.count {
                let bar = s.errorBars[index]
                guard bar.low.isFinite, bar.high.isFinite, !yLogarithmic || (bar.low > 0 && bar.high > 0) else { continue }
                let x = px(p.x), lo = py(bar.low), hi = py(bar.high)
                svg += "<path d=\"M\(f(x)) \(f(lo))V\(f(hi))M\(f(x - 4)) \(f(lo))h8M\(f(x - 4)) \(f(hi))h8\" stroke=\"\(s.color)\" stroke-width=\"1.2\" fill=\"none\"/>\n"
            }
            if s.style != .markers && s.points.count > 1 {
                let dash = s.style == .dashed ? " stroke-dasharray=\"6 4\"" : ""
                svg += "<polyline points=\"\(points)\" fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"1.8\"\(dash)/>\n"
            }
            if s.style == .markers || s.style == .lineAndMarkers {
                for p in s.points { svg += "<circle cx=\"\(f(px(p.x)))\" cy=\"\(f(py(p.y)))\" r=\"3.2\" fill=\"\(s.color)\"/>\n" }
            }
        }
        // The legend: inside the frame, upper right, on a white box.
        if !series.isEmpty {
            let longest = series.map { Self.visibleLength($0.label) }.max() ?? 0
            let boxWidth = 44 + 6.6 * Double(longest)
            let bx = left + plotWidth - boxWidth - 8, by = top + 8
            svg += "<rect x=\"\(f(bx))\" y=\"\(f(by))\" width=\"\(f(boxWidth))\" height=\"\(f(legendHeight - 4))\" fill=\"white\" fill-opacity=\"0.9\" stroke=\"#bbb\"/>\n"
            for (index, s) in series.enumerated() {
                let ly = by + 18 + Double(index) * 18
                let lx = bx + 8
                if s.style == .markers {
                    svg += "<circle cx=\"\(f(lx + 11))\" cy=\"\(f(ly - 4))\" r=\"3.2\" fill=\"\(s.color)\"/>\n"
                } else {
                    svg += "<line x1=\"\(f(lx))\" y1=\"\(f(ly - 4))\" x2=\"\(f(lx + 22))\" y2=\"\(f(ly - 4))\" stroke=\"\(s.color)\" stroke-width=\"2\"\(s.style == .dashed ? " stroke-dasharray=\"6 4\"" : "")/>\n"
                }
                svg += "<text x=\"\(f(lx + 28))\" y=\"\(f(ly))\">\(text(s.label))</text>\n"
            }
        }
        for (index, note) in notes.enumerated() {
            svg += "<text x=\"\(f(left))\" y=\"\(f(height - bottom + 60 + Double(index) * 16))\">\(text(note))</text>\n"
        }
        svg += "</svg>\n"
        return svg
    }

    /// SVG text for a label: XML-escaped, with `_x`, `_{…}` as subscripts and `^x`, `^{…}`
    /// as superscripts (text spans shifted and set smaller).
    public static func typeset(_ label: String) -> String {
        func escape(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        }
        var result = ""
        var characters = Array(label)[...]
        while let c = characters.first {
            characters = characters.dropFirst()
            guard (c == "_" || c == "^"), let next = characters.first else { result += escape(String(c)); continue }
            var script: String
            if next == "{", let close = characters.firstIndex(of: "}") {
                script = String(characters[characters.index(after: characters.startIndex)..<close])
                characters = characters[characters.index(after: close)...]
            } else {
                script = String(next)
                characters = characters.dropFirst()
            }
            let shift = c == "_" ? "sub" : "super"
            result += "<tspan baseline-shift=\"\(shift)\" font-size=\"75%\">\(escape(script))</tspan>"
        }
        return result
    }

    /// The number of characters a label shows once typeset (markup removed).
    static func visibleLength(_ label: String) -> Int {
        label.filter { $0 != "_" && $0 != "^" && $0 != "{" && $0 != "}" }.count
    }

    /// Tick positions (in transformed units) and labels.
    func ticks(_ low: Double, _ high: Double, log: Bool) -> [(Double, String)] {
        if log {
            var result: [(Double, String)] = []
            let span = high - low
            if span < 1.2 {
                // Narrow: powers of two.
                var e = (low / Foundation.log10(2)).rounded(.up)
                while e * Foundation.log10(2) <= high {
                    if Foundation.pow(2, e).isFinite { result.append((e * Foundation.log10(2), Self.format(Foundation.pow(2, e)))) }
                    e += 1
                }
                if result.count >= 2 { return result }
            }
            // (Ticks past the largest double, which padding may reach, are left out.)
            var e = low.rounded(.up)
            while e <= high {
                if Foundation.pow(10, e).isFinite { result.append((e, Self.format(Foundation.pow(10, e)))) }
                e += 1
            }
            if result.count < 2 {
                return linearTicks(low, high).filter { Foundation.pow(10, $0).isFinite }.map { ($0, Self.format(Foundation.pow(10, $0))) }
            }
            return result
        }
        return linearTicks(low, high).map { ($0, Self.format($0)) }
    }

    func linearTicks(_ low: Double, _ high: Double) -> [Double] {
        let raw = (high - low) / 6
        let magnitude = Foundation.pow(10, Foundation.floor(Foundation.log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
        var v = (low / step).rounded(.up) * step
        var result: [Double] = []
        while v <= high + step * 1e-9 { result.append(v); v += step }
        return result
    }

    /// A tick label: integers as such, powers of ten as 10^e (typeset), others to 3 digits.
    static func format(_ v: Double) -> String {
        guard v.isFinite else { return v.isNaN ? "NaN" : (v > 0 ? "∞" : "−∞") }
        if v == 0 { return "0" }
        let a = abs(v)
        if a >= 1e5 || a < 1e-3 {
            let e = Foundation.log10(a)
            func power(_ e: Int) -> String { "10^{" + (e < 0 ? "−\(-e)" : "\(e)") + "}" }
            if abs(e - e.rounded()) < 1e-9 { return (v < 0 ? "−" : "") + power(Int(e.rounded())) }
            let exponent = Int(Foundation.floor(e))
            return String(format: "%.1f", v / Foundation.pow(10, Double(exponent))) + "·" + power(exponent)
        }
        if a == a.rounded() { return String(format: "%.0f", v) }
        return String(format: "%.3g", v)
    }
}
