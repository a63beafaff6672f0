import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
@testable import Plots

@Suite struct SVGPlotTests {
    @Test("labels: _x, _{…}, ^x, ^{…} become sub- and superscript spans; XML is escaped")
    func typesetting() throws {
        #expect(SVGPlot.typeset("λ_k") == #"λ<tspan baseline-shift="sub" font-size="75%">k</tspan>"#)
        #expect(SVGPlot.typeset("Θ_{width} < 1") == #"Θ<tspan baseline-shift="sub" font-size="75%">width</tspan> &lt; 1"#)
        #expect(SVGPlot.typeset("n^{−1/2} & x^2") == #"n<tspan baseline-shift="super" font-size="75%">−1/2</tspan> &amp; x<tspan baseline-shift="super" font-size="75%">2</tspan>"#)
        #expect(SVGPlot.typeset("a_") == "a_")
        #expect(SVGPlot.visibleLength("Σ_{i ≤ k} x^2") == 9)
        #expect(SVGPlot.format(1e-4) == "10^{−4}" && SVGPlot.format(2e6) == "2.0·10^{6}" && SVGPlot.format(64) == "64")
    }

    @Test("ticks at given x values, error bars, a legend inside the frame; the document is well-formed XML")
    func document() throws {
        var plot = SVGPlot(title: "t", xLabel: "width n", yLabel: "‖Θ_n − Θ_∞‖_F", xLogarithmic: true, yLogarithmic: true)
        plot.xTicks = [64, 128, 1024]
        plot.add("mean", [(64, 0.5), (128, 0.3), (1024, 0.1)], style: .lineAndMarkers, errorBars: [(0.4, 0.6), (0.25, 0.35), (0.08, 0.12)])
        let svg = plot.render()
        let document = try XMLDocument(data: Data(svg.utf8))
        #expect(document.rootElement()?.name == "svg")
        let texts = try document.nodes(forXPath: "//*[local-name()='text']").compactMap { $0.stringValue }
        for tick in ["64", "128", "1024"] { #expect(texts.contains(tick), "\(texts)") }
        #expect(!texts.contains("1000"), "automatic ticks replaced by the given ones")
        #expect(try document.nodes(forXPath: "//*[local-name()='path']").count == 3, "one error bar per point")
        // The legend box lies inside the plot frame (no quarter of the width given to it).
        let rects = try document.nodes(forXPath: "//*[local-name()='rect']")
        try #require(rects.count == 3, "background, frame, legend")
        let frame = rects[1], legend = rects[2]
        func value(_ node: XMLNode, _ name: String) -> Double {
            Double((try? node.nodes(forXPath: "@\(name)").first?.stringValue) ?? "") ?? .nan
        }
        #expect(value(legend, "x") + value(legend, "width") <= value(frame, "x") + value(frame, "width"))
        #expect(value(frame, "width") >= 0.85 * 720, "the frame takes most of the width (the legend took 200 of 720 before)")
    }

    @Test("values near the largest double: no tick past it, no crash; non-finite labels are words")
    func extremes() throws {
        var plot = SVGPlot(title: "t", xLabel: "k", yLabel: "λ", xLogarithmic: true, yLogarithmic: true)
        plot.add("λ", [(1, 1.7e308), (2, 1e300), (3, 1e-300)], style: .line)
        let document = try XMLDocument(data: Data(plot.render().utf8))
        let texts = try document.nodes(forXPath: "//*[local-name()='text']").compactMap { $0.stringValue }
        #expect(!texts.contains { $0.contains("∞") || $0.contains("nan") }, "\(texts)")
        #expect(SVGPlot.format(.infinity) == "∞" && SVGPlot.format(-.infinity) == "−∞" && SVGPlot.format(.nan) == "NaN")
    }

    @Test("PNG: librsvg renders the plot at twice its size; a valid PNG with the plot's pixels")
    func png() throws {
        guard PNGRenderer.available else {
            // scripts/setup.sh installs librsvg2-2; without it ntk writes SVG only, by design.
            try Test.cancel("librsvg-2.so.2 or libcairo.so.2 is not installed")
        }
        var plot = SVGPlot(title: "spectrum", xLabel: "k", yLabel: "λ_k", xLogarithmic: true, yLogarithmic: true)
        plot.add("λ_k", (1...50).map { (Double($0), 1 / Double($0 * $0)) }, style: .lineAndMarkers)
        let png = try #require(PNGRenderer.render(svg: plot.render()))
        #expect(Array(png.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        func be32(_ offset: Int) -> Int { png[offset..<(offset + 4)].reduce(0) { $0 << 8 | Int($1) } }
        #expect(String(decoding: png[12..<16], as: UTF8.self) == "IHDR")
        #expect(be32(16) == 1440 && be32(20) == 920)
        // A blank page of the same size compresses to a few KB; text, lines and markers do not.
        let blank = try #require(PNGRenderer.render(svg: #"<svg xmlns="http://www.w3.org/2000/svg" width="720" height="460"><rect width="100%" height="100%" fill="white"/></svg>"#))
        #expect(png.count > 5 * blank.count, "\(png.count) bytes against \(blank.count) for a blank page")
        #expect(PNGRenderer.render(svg: "not svg") == nil)
    }
}
