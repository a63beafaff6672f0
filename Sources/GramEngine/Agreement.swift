import Foundation
import MPI

/// A failure every rank has agreed on; its message has been printed once.
struct AgreedFailure: Error {
    let status: ExitStatus
}

/// Runs steps that may fail on some ranks only, and makes every rank agree on the
/// outcome before the next collective, so that no rank is left waiting for a peer that
/// gave up (which would hang the job).
struct Agreement {
    let world: Communicator

    /// Runs `body`; then all ranks agree. On any failure the first failing rank prints
    /// its message and every rank throws `AgreedFailure` with the worst status.
    /// `quietly` waits without spinning (for steps where one rank works long alone).
    /// Collective.
    func stage<T>(quietly: Bool = false, _ body: () throws(NTKError) -> T) throws -> T {
        var result: T? = nil
        var failure: NTKError? = nil
        do { result = try body() } catch { failure = error }
        let status = failure?.status.rawValue ?? 0
        let agreed = quietly ? try world.agreeQuietly(status: status) : try world.agree(status: status)
        if agreed.status != 0 {
            if agreed.firstFailingRank == world.rank, let failure { Report.error(failure.message) }
            throw AgreedFailure(status: ExitStatus(rawValue: agreed.status) ?? .software)
        }
        return result!
    }
}

/// The outcome of a job on every rank, as the exit status they all share.
public enum JobRunner {
    /// Runs `body` on this rank. A failure all ranks agreed on (`Agreement.stage`) gives
    /// its status, already printed; any other error is a bug on this rank alone, while
    /// peers may wait in a collective, so it is printed and the whole job aborted.
    public static func run(world: Communicator, _ body: () throws -> Void) -> ExitStatus {
        do {
            try body()
            return .success
        } catch let failure as AgreedFailure {
            return failure.status
        } catch {
            Report.error("internal error: \(error)")
            world.abort(code: ExitStatus.software.rawValue)
        }
    }
}

/// What the tool prints.
public enum Report {
    /// One error line on stderr, written at once (unbuffered).
    public static func error(_ message: String) {
        FileHandle.standardError.write(Data("ntk: error: \(message)\n".utf8))
    }

    /// One warning line on stderr.
    public static func warning(_ message: String) {
        FileHandle.standardError.write(Data("ntk: warning: \(message)\n".utf8))
    }

    static func summary(_ s: GramSummary, directory: String) {
        var lines: [String] = []
        let shape = s.kernelShape.map(String.init).joined(separator: " x ")
        let name = s.kernel == "empirical" ? "empirical NTK" : s.kernel == "nngp" ? "infinite-width NNGP kernel" : "infinite-width NTK"
        let size = s.kernel == "empirical" ? ", P = \(s.parameters) parameters" : ""
        lines.append("ntk gram: \(name), \(shape) (\(s.outputKernel) over k = \(s.outputs))\(size), \(s.parameterization) parameterization")
        lines.append(String(format: "  %d rank(s), %d tiles of %d, %@ method; %.2f s total (tiles %.2f s, gather %.2f s%@)",
                            s.ranks, s.tiles, s.tileSize, s.method, s.seconds["total"] ?? 0, s.seconds["tiles"] ?? 0,
                            s.seconds["gather"] ?? 0, s.seconds["eigen"].map { String(format: ", eigen %.2f s", $0) } ?? ""))
        if let sp = s.spectrum {
            let topOnly = s.krylov != nil || s.density != nil
            let cond = sp.conditionNumber.map { String(format: "%.4g", $0) } ?? "inf (singular)"
            if topOnly {
                lines.append(String(format: "  top eigenvalues (block Lanczos): smallest of them %.6g, max %.6g, their sum %.6g", sp.min, sp.max, sp.trace))
            } else {
                lines.append(String(format: "  spectrum: min %.6g, max %.6g, trace %.6g, condition number %@", sp.min, sp.max, sp.trace, cond))
            }
            if let d = s.diagnostics {
                func g(_ v: Double?) -> String { v.map { String(format: "%.4g", $0) } ?? "n/a" }
                lines.append("  effective rank \(g(d.effectiveRank)), participation ratio \(g(d.participationRatio)), stable rank \(g(d.stableRank)), decay exponent \(g(d.decayExponent))")
            }
            if let rate = s.maxStableLearningRate {
                lines.append(String(format: "  largest stable learning rate (MSE, c = N·k): %.6g", rate))
            }
        }
        if let d = s.density {
            func e(_ x: Estimate) -> String {
                String(format: "%.5g", x.value) + (x.standardError.map { String(format: " ± %.2g", $0) } ?? "")
            }
            lines.append("  spectral density (\(d.probes) probes x \(d.steps) Lanczos steps; estimates ± standard errors):")
            lines.append("  trace \(e(d.trace)), effective rank \(e(d.effectiveRank)), participation ratio \(e(d.participationRatio)), lambda_max >= \(String(format: "%.6g", d.lambdaMaxRitz))"
                         + (d.decayExponent.map { String(format: ", decay exponent %.4g (top %d)", $0, d.decayFitModes ?? 0) } ?? ""))
        }
        if let o = s.outOfCore {
            lines.append(String(format: "  out of core: %d passes over kernel.npy, %.1f GB read in %.1f s (%.2f GB/s while reading, %.2f GB/s with the products; %@)",
                                o.passes, o.bytesRead / 1e9, o.passSeconds, o.readBandwidth / 1e9, o.streamBandwidth / 1e9,
                                o.directIO ? "O_DIRECT" : "through the page cache"))
        }
        lines.append("  wrote \(s.files.joined(separator: ", ")) to \(directory)")
        print(lines.joined(separator: "\n"))
    }
}
