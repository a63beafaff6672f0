import Testing
import TileKernels

func lcgMatrix(_ count: Int, seed: UInt64) -> [Double] {
    var state = seed
    return (0..<count).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Double(state >> 11) * 0x1.0p-53 * 2 - 1
    }
}

@Suite struct InnerProductsTests {
    @Test("A Bᵀ equals a naive double loop to 1e-14 relative for odd and even shapes",
          arguments: [(1, 1, 1), (2, 2, 4), (3, 5, 7), (8, 9, 33), (17, 4, 64), (5, 5, 0), (13, 26, 600), (9, 14, 257)])
    func againstNaive(shape: (Int, Int, Int)) {
        let (m, n, k) = shape
        let a = lcgMatrix(m * k, seed: 1), b = lcgMatrix(n * k, seed: 2)
        var c = [Double](repeating: .nan, count: m * n)
        InnerProducts.multiplyTransposed(m: m, n: n, k: k, a: a, lda: k, b: b, ldb: k, c: &c, ldc: n)
        for i in 0..<m { for j in 0..<n {
            var s = 0.0, scale = 0.0
            for p in 0..<k { s += a[i * k + p] * b[j * k + p]; scale += abs(a[i * k + p] * b[j * k + p]) }
            #expect(abs(c[i * n + j] - s) <= 1e-14 * max(scale, 1))
        } }
    }

    @Test("every entry is bitwise the same whatever block of the product computes it")
    func blockIndependence() {
        let n = 13, k = 531  // past a k-chunk boundary (256), with a tail
        let x = lcgMatrix(n * k, seed: 5)
        var whole = [Double](repeating: 0, count: n * n)
        InnerProducts.multiplyTransposed(m: n, n: n, k: k, a: x, lda: k, b: x, ldb: k, c: &whole, ldc: n)
        for i0 in stride(from: 0, to: n, by: 3) {
            for j0 in stride(from: 0, to: n, by: 5) {
                let mi = min(3, n - i0), nj = min(5, n - j0)
                var part = [Double](repeating: 0, count: mi * nj)
                x.withUnsafeBufferPointer { p in
                    InnerProducts.multiplyTransposed(m: mi, n: nj, k: k, a: p.baseAddress! + i0 * k, lda: k,
                                                     b: p.baseAddress! + j0 * k, ldb: k, c: &part, ldc: nj)
                }
                for i in 0..<mi { for j in 0..<nj { #expect(part[i * nj + j] == whole[(i0 + i) * n + j0 + j]) } }
            }
        }
        for i in 0..<n { for j in 0..<n { #expect(whole[i * n + j] == whole[j * n + i]) } }
        // `dot` runs the same chain of multiply-adds as every entry.
        x.withUnsafeBufferPointer { p in
            for i in 0..<n { for j in 0..<n {
                #expect(InnerProducts.dot(k: k, p.baseAddress! + i * k, p.baseAddress! + j * k) == whole[i * n + j])
            } }
        }
    }

    @Test("upperFrom g: every entry whose column group does not precede its row group is the full product's, bitwise; the rest is left alone",
          arguments: [(1, 40, 70), (3, 39, 300), (2, 26, 9), (1, 5, 1)])
    func upperTriangle(shape: (Int, Int, Int)) {
        let (group, n, k) = shape
        let x = lcgMatrix(n * k, seed: 9)
        var whole = [Double](repeating: 0, count: n * n)
        InnerProducts.multiplyTransposed(m: n, n: n, k: k, a: x, lda: k, b: x, ldb: k, c: &whole, ldc: n)
        var upper = [Double](repeating: .nan, count: n * n)
        InnerProducts.multiplyTransposed(m: n, n: n, k: k, a: x, lda: k, b: x, ldb: k, c: &upper, ldc: n, upperFrom: group)
        var skipped = 0
        for i in 0..<n { for j in 0..<n {
            if j / group >= i / group {
                #expect(upper[i * n + j] == whole[i * n + j], "(\(i), \(j))")
            } else if upper[i * n + j].isNaN {
                skipped += 1
            } else {
                // A block straddling the diagonal is computed whole.
                #expect(upper[i * n + j] == whole[i * n + j], "(\(i), \(j))")
            }
        } }
        // Blocks wholly below the diagonal were skipped when there are any.
        #expect(n < 30 || skipped > 0)
    }
}

@Suite struct InnerProductsF32Tests {
    /// float32 products summed in float32 over chunks of 256: the error of an entry is at
    /// most about 256 · 2⁻²⁴ ≈ 1.5e-5 of Σ|x_i y_i| (the standard γ_n bound for the chunk),
    /// the chunks being summed in float64.
    @Test("float32 products with float64 chunk sums stay within the γ_256 bound of the exact inner products",
          arguments: [(1, 1, 1), (4, 4, 16), (9, 7, 33), (13, 26, 600), (5, 5, 0)])
    func bound(shape: (Int, Int, Int)) {
        let (m, n, k) = shape
        let a = lcgMatrix(m * k, seed: 3).map(Float.init), b = lcgMatrix(n * k, seed: 4).map(Float.init)
        var c = [Double](repeating: .nan, count: m * n)
        InnerProducts.multiplyTransposed(m: m, n: n, k: k, a: a, lda: k, b: b, ldb: k, c: &c, ldc: n)
        for i in 0..<m { for j in 0..<n {
            var exact = 0.0, scale = 0.0
            for p in 0..<k {
                let product = Double(a[i * k + p]) * Double(b[j * k + p])
                exact += product
                scale += abs(product)
            }
            #expect(abs(c[i * n + j] - exact) <= 256 * 0x1p-24 * scale + 1e-300, "(\(i), \(j))")
        } }
    }

    @Test("float32 entries are bitwise the same whatever block computes them")
    func blockIndependence() {
        let n = 13, k = 531
        let x = lcgMatrix(n * k, seed: 7).map(Float.init)
        var whole = [Double](repeating: 0, count: n * n)
        InnerProducts.multiplyTransposed(m: n, n: n, k: k, a: x, lda: k, b: x, ldb: k, c: &whole, ldc: n)
        var part = [Double](repeating: 0, count: 3 * 5)
        x.withUnsafeBufferPointer { p in
            InnerProducts.multiplyTransposed(m: 3, n: 5, k: k, a: p.baseAddress! + 6 * k, lda: k,
                                             b: p.baseAddress! + 2 * k, ldb: k, c: &part, ldc: 5)
        }
        for i in 0..<3 { for j in 0..<5 { #expect(part[i * 5 + j] == whole[(6 + i) * n + 2 + j]) } }
    }
}
