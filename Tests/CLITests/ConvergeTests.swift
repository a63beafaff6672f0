import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing

@Suite(.serialized) struct ConvergeTests {
    @Test("ntk converge on 2 ranks: the distance to the analytic NTK shrinks with width; CSV, JSON, a well-formed SVG (ticks at the widths, a bar per width) and its PNG are written")
    func converge() throws {
        let dir = Launcher.temporaryDirectory("conv")
        try Launcher.writeNPY(dir + "/x.npy", shape: [20, 4], values: Launcher.values(80, seed: 8))
        let out = dir + "/out"
        let result = try Launcher.run(["converge", "--data", dir + "/x.npy", "--depth", "2", "--widths", "16,64,256",
                                       "--seeds", "0,1,2", "--tile", "8", "--out", out], ranks: 2, timeout: 120)
        try #require(result.status == 0, "\(result.stderr)")
        let csv = try String(contentsOfFile: out + "/converge.csv", encoding: .utf8).split(separator: "\n")
        #expect(csv.count == 1 + 9)
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/converge.json"))) as! [String: Any]
        let means = summary["mean_by_width"] as! [String: Double]
        // Theory: distance ~ width^(-1/2), so 16x the width is ~4x closer; 2x leaves room for seed noise.
        #expect(means["256"]! * 2 < means["16"]!, "\(means)")
        let slope = try #require(summary["slope"] as? Double)
        #expect(slope < -0.2 && slope > -1.0, "slope \(slope)")
        let svg = try Data(contentsOf: URL(fileURLWithPath: out + "/converge.svg"))
        let document = try XMLDocument(data: svg)
        #expect(document.rootElement()?.name == "svg")
        // Ticks at the widths measured, and the spread over the 3 seeds as a bar per width.
        let texts = try document.nodes(forXPath: "//*[local-name()='text']").compactMap { $0.stringValue }
        for width in ["16", "64", "256"] { #expect(texts.contains(width), "\(texts)") }
        #expect(try document.nodes(forXPath: "//*[local-name()='path']").count == 3)
        // The PNG copy, where librsvg is installed (scripts/setup.sh installs it).
        if FileManager.default.fileExists(atPath: "/usr/lib/x86_64-linux-gnu/librsvg-2.so.2") || FileManager.default.fileExists(atPath: "/usr/lib/aarch64-linux-gnu/librsvg-2.so.2") {
            let png = try Data(contentsOf: URL(fileURLWithPath: out + "/converge.png"))
            #expect(Array(png.prefix(4)) == [0x89, 0x50, 0x4E, 0x47])
            #expect((summary["files"] as? [String])?.contains("converge.png") == true)
        }
        #expect(result.stdout.contains("log-log slope"))
    }
}
