#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Set by the signal handler; read at tile boundaries.
private let requestedSignal = Atomic<Int32>(0)

/// Stop requests from the scheduler: SIGUSR1 (the usual "checkpoint now", forwarded to
/// every rank by mpirun and srun), SIGTERM and SIGINT. The handler only records the
/// signal; the engine stops at the next tile boundary, with every finished tile already
/// on disk, and exits 75.
public enum Interruption {
    /// The stop requests handled, in the order a report names the first received.
    public static let signals: [Int32] = [SIGUSR1, SIGTERM, SIGINT]

    /// Installs the handlers. Call once per process, before the work starts.
    /// The signals are also unblocked: a launcher may hand down a blocked mask (threads
    /// of some runtimes block them), and a blocked stop request would go unseen.
    public static func install() {
        var unblock = sigset_t()
        sigemptyset(&unblock)
        for signal in signals { sigaddset(&unblock, signal) }
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        for signal in signals {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { received in requestedSignal.store(received, ordering: .relaxed) }
            sigemptyset(&action.sa_mask)
            action.sa_flags = 0
            sigaction(signal, &action, nil)
        }
    }

    /// The signal received, if any.
    public static var requested: Int32? {
        let value = requestedSignal.load(ordering: .relaxed)
        return value == 0 ? nil : value
    }

    static func name(_ signal: Int32) -> String {
        switch signal {
        case SIGUSR1: return "SIGUSR1"
        case SIGTERM: return "SIGTERM"
        case SIGINT: return "SIGINT"
        default: return "signal \(signal)"
        }
    }
}
