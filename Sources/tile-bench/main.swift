// Tile kernel benchmark: ntk's SIMD inner-product blocks against OpenBLAS dgemm on the
// same shapes, one thread, in one process. Usage: tile-bench [repeats]
// Prints GFLOP/s (2·m·n·k flops per product) as the median of the repeats.
import Foundation
import LinearAlgebra
import TileKernels

let repeats = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 7 : 7
BLASLibrary.setThreadCount(1)
print("tile kernels: \(InnerProducts.instructionSet); BLAS: OpenBLAS \(BLASLibrary.coreName) kernel, 1 thread")
print("shape (m x n x k)      ntk GFLOP/s   dgemm GFLOP/s   ntk / dgemm   ntk f32 GFLOP/s")

func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

func time(_ body: () -> Void) -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

func random(_ count: Int, seed: UInt64) -> [Double] {
    var state = seed
    return (0..<count).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Double(state >> 11) * 0x1.0p-53 - 0.5
    }
}

// The last three: the CNN benchmark's explicit layer (k = 10 outputs x 3x3x64x64 weights) and
// its spatial structured layer (96 patches x 384 patches over K = 576 and k·C = 640).
for (m, n, k) in [(256, 256, 64), (256, 256, 512), (256, 256, 1024), (256, 256, 2048), (512, 512, 512),
                  (128, 128, 368_640), (96, 384, 576), (96, 384, 640)] {
    let a = random(m * k, seed: 1), b = random(n * k, seed: 2)
    var c = [Double](repeating: 0, count: m * n)
    let flops = 2.0 * Double(m * n * k)
    // Enough products per sample to last ~20 ms.
    let inner = max(1, Int(2e7 / (Double(m * n * k) / 10)) / 10)
    var ours: [Double] = [], theirs: [Double] = []
    for _ in 0..<repeats {
        ours.append(time {
            for _ in 0..<inner {
                a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
                    InnerProducts.multiplyTransposed(m: m, n: n, k: k, a: ap.baseAddress!, lda: k, b: bp.baseAddress!, ldb: k,
                                                     c: cp.baseAddress!, ldc: n)
                } } }
            }
        })
        theirs.append(time {
            for _ in 0..<inner {
                a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
                    GEMM.multiplyTransposed(m: m, n: n, k: k, a: ap.baseAddress!, lda: k, b: bp.baseAddress!, ldb: k,
                                            c: cp.baseAddress!, ldc: n)
                } } }
            }
        })
    }
    let g1 = flops * Double(inner) / median(ours) / 1e9
    let g2 = flops * Double(inner) / median(theirs) / 1e9
    // The float32 variant (float64 chunk sums) on the same shapes.
    let af = a.map(Float.init), bf = b.map(Float.init)
    var single: [Double] = []
    for _ in 0..<repeats {
        single.append(time {
            for _ in 0..<inner {
                af.withUnsafeBufferPointer { ap in bf.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
                    InnerProducts.multiplyTransposed(m: m, n: n, k: k, a: ap.baseAddress!, lda: k, b: bp.baseAddress!, ldb: k,
                                                     c: cp.baseAddress!, ldc: n)
                } } }
            }
        })
    }
    let g3 = flops * Double(inner) / median(single) / 1e9
    print(String(format: "%-22@ %11.1f   %13.1f   %10.2f   %12.1f", "\(m) x \(n) x \(k)" as NSString, g1, g2, g1 / g2, g3))
}
