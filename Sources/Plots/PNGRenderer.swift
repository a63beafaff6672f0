import CSVGRaster
import Foundation

/// PNG copies of the SVG plots, for viewers that do not render SVG: librsvg and cairo,
/// loaded at run time. Where they are not installed nothing is rendered (`available` is
/// false) and the SVG stays the only copy.
public enum PNGRenderer {
    /// The PNG of an SVG document, rendered at `scale` times its size (2: sharp on
    /// high-density screens and in slides); nil when librsvg is missing or fails.
    public static func render(svg: String, width: Double = 720, height: Double = 460, scale: Double = 2) -> Data? {
        var bytes: UnsafeMutablePointer<UInt8>? = nil
        var count = 0
        let utf8 = Array(svg.utf8)
        let status = utf8.withUnsafeBufferPointer { document in
            document.withMemoryRebound(to: CChar.self) { text in
                ntk_svg_to_png(text.baseAddress, text.count, Int32((width * scale).rounded()), Int32((height * scale).rounded()),
                               &bytes, &count)
            }
        }
        guard status == 0, let bytes else { return nil }
        defer { free(bytes) }
        return Data(bytes: bytes, count: count)
    }

    /// Whether PNGs can be rendered here (librsvg and cairo load).
    public static var available: Bool {
        render(svg: #"<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>"#, width: 4, height: 4, scale: 1) != nil
    }
}
