import Foundation

/// A small line and scatter plot written as SVG, readable in any browser.
///
/// Axes may be logarithmic (base 10 ticks, or base 2 for narrow ranges); series are
/// drawn as markers, lines or dashed lines, with a legend.
public struct SVGPlot: Sendable {
    public enum Style: Sendable { case markers, line, dashed, lineAndMarkers }

    public struct Series: Sendable {
        public var label: String
        public var points: [(x: Double, y: Double)]
        public var style: Style
        public var color: String
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var xLogarithmic: Bool
    public var yLogarithmic: Bool
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
    /// axis) are left out.
    public mutating func add(_ label: String, _ points: [(x: Double, y: Double)], style: Style, color: String? = nil) {
        let kept = points.filter { $0.x.isFinite && $0.y.isFinite && (!xLogarithmic || $0.x > 0) && (!yLogarithmic || $0.y > 0) }
        series.append(Series(label: label, points: kept, style: style, color: color ?? Self.palette[series.count % Self.palette.count]))
    }

    /// The SVG document.
    public func render(width: Double = 720, height: Double = 460) -> String {
        let left = 80.0, right = 200.0, top = 40.0, bottom = 60.0 + Double(notes.count) * 16
        let plotWidth = width - left - right, plotHeight = height - top - bottom
        let all = series.flatMap(\.points)
        func transform(_ v: Double, log: Bool) -> Double { log ? Foundation.log10(v) : v }
        var xs = all.map { transform($0.x, log: xLogarithmic) }, ys = all.map { transform($0.y, log: yLogarithmic) }
        if xs.isEmpty { xs = [0, 1] }
        if ys.isEmpty { ys = [0, 1] }
        var (x0, x1) = (xs.min()!, xs.max()!), (y0, y1) = (ys.min()!, ys.max()!)
        if x1 - x0 < 1e-12 { x0 -= 0.5; x1 += 0.5 }
        if y1 - y0 < 1e-12 { y0 -= 0.5; y1 += 0.5 }
        let xPad = (x1 - x0) * 0.05, yPad = (y1 - y0) * 0.08
        x0 -= xPad; x1 += xPad; y0 -= yPad; y1 += yPad
        func px(_ x: Double) -> Double { left + (transform(x, log: xLogarithmic) - x0) / (x1 - x0) * plotWidth }
        func py(_ y: Double) -> Double { top + plotHeight - (transform(y, log: yLogarithmic) - y0) / (y1 - y0) * plotHeight }
        func f(_ v: Double) -> String { String(format: "%.2f", v) }
        func esc(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        }

        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(f(width))" height="\(f(height))" viewBox="0 0 \(f(width)) \(f(height))" font-family="Helvetica, Arial, sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(f(left + plotWidth / 2))" y="24" text-anchor="middle" font-size="15">\(esc(title))</text>
            <rect x="\(f(left))" y="\(f(top))" width="\(f(plotWidth))" height="\(f(plotHeight))" fill="none" stroke="#333"/>

            """
        for (value, label) in ticks(x0, x1, log: xLogarithmic) {
            let x = left + (value - x0) / (x1 - x0) * plotWidth
            svg += "<line x1=\"\(f(x))\" y1=\"\(f(top))\" x2=\"\(f(x))\" y2=\"\(f(top + plotHeight))\" stroke=\"#e5e5e5\"/>\n"
            svg += "<text x=\"\(f(x))\" y=\"\(f(top + plotHeight + 16))\" text-anchor=\"middle\">\(esc(label))</text>\n"
        }
        for (value, label) in ticks(y0, y1, log: yLogarithmic) {
            let y = top + plotHeight - (value - y0) / (y1 - y0) * plotHeight
            svg += "<line x1=\"\(f(left))\" y1=\"\(f(y))\" x2=\"\(f(left + plotWidth))\" y2=\"\(f(y))\" stroke=\"#e5e5e5\"/>\n"
            svg += "<text x=\"\(f(left - 6))\" y=\"\(f(y + 4))\" text-anchor=\"end\">\(esc(label))</text>\n"
        }
        svg += "<text x=\"\(f(left + plotWidth / 2))\" y=\"\(f(top + plotHeight + 40))\" text-anchor=\"middle\">\(esc(xLabel))</text>\n"
        svg += "<text transform=\"translate(18 \(f(top + plotHeight / 2))) rotate(-90)\" text-anchor=\"middle\">\(esc(yLabel))</text>\n"
        for (index, s) in series.enumerated() {
            let points = s.points.map { "\(f(px($0.x))),\(f(py($0.y)))" }.joined(separator: " ")
            if s.style != .markers && s.points.count > 1 {
                let dash = s.style == .dashed ? " stroke-dasharray=\"6 4\"" : ""
                svg += "<polyline points=\"\(points)\" fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"1.8\"\(dash)/>\n"
            }
            if s.style == .markers || s.style == .lineAndMarkers {
                for p in s.points { svg += "<circle cx=\"\(f(px(p.x)))\" cy=\"\(f(py(p.y)))\" r=\"3.2\" fill=\"\(s.color)\"/>\n" }
            }
            let ly = top + 14 + Double(index) * 18
            let lx = left + plotWidth + 14
            if s.style == .markers {
                svg += "<circle cx=\"\(f(lx + 11))\" cy=\"\(f(ly - 4))\" r=\"3.2\" fill=\"\(s.color)\"/>\n"
            } else {
                svg += "<line x1=\"\(f(lx))\" y1=\"\(f(ly - 4))\" x2=\"\(f(lx + 22))\" y2=\"\(f(ly - 4))\" stroke=\"\(s.color)\" stroke-width=\"2\"\(s.style == .dashed ? " stroke-dasharray=\"6 4\"" : "")/>\n"
            }
            svg += "<text x=\"\(f(lx + 28))\" y=\"\(f(ly))\">\(esc(s.label))</text>\n"
        }
        for (index, note) in notes.enumerated() {
            svg += "<text x=\"\(f(left))\" y=\"\(f(height - bottom + 60 + Double(index) * 16))\">\(esc(note))</text>\n"
        }
        svg += "</svg>\n"
        return svg
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
                    result.append((e * Foundation.log10(2), Self.format(Foundation.pow(2, e))))
                    e += 1
                }
                if result.count >= 2 { return result }
            }
            var e = low.rounded(.up)
            while e <= high { result.append((e, Self.format(Foundation.pow(10, e)))); e += 1 }
            if result.count < 2 {
                return linearTicks(low, high).map { ($0, Self.format(Foundation.pow(10, $0))) }
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

    static func format(_ v: Double) -> String {
        if v == 0 { return "0" }
        let a = abs(v)
        if a >= 1e5 || a < 1e-3 { return String(format: "%.0e", v) }
        if a == a.rounded() { return String(format: "%.0f", v) }
        return String(format: "%.3g", v)
    }
}
