import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The file system calls the engine makes, each in one place, with C error codes turned
/// into `NTKError`s whose messages name the path and the system's reason.
enum FileSystem {
    /// Whether anything (a dangling symbolic link included) is at `path`.
    static func exists(_ path: String) -> Bool {
        var status = stat()
        return lstat(path, &status) == 0
    }

    /// Whether `path` names a directory (following symbolic links).
    static func isDirectory(_ path: String) -> Bool {
        var status = stat()
        return stat(path, &status) == 0 && (status.st_mode & S_IFMT) == S_IFDIR
    }

    /// Creates `path` and its missing parents (mode 0755); symbolic links on the way are
    /// followed. Throws `cannotCreate` (73) naming the component that failed and why: a
    /// regular file on the way, a dangling symbolic link, no permission.
    static func makeDirectories(_ path: String, role: String) throws(NTKError) {
        if isDirectory(path) { return }
        var status = stat()
        if lstat(path, &status) == 0 {
            if (status.st_mode & S_IFMT) == S_IFLNK {
                let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) ?? "?"
                throw NTKError(.cannotCreate, "\(role) \(path) is a symbolic link to \(target), which does not exist")
            }
            throw NTKError(.cannotCreate, "\(role) \(path) exists and is not a directory")
        }
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        var prefix = ""
        for component in absolute.split(separator: "/", omittingEmptySubsequences: true) {
            prefix += "/" + component
            if isDirectory(prefix) { continue }
            if mkdir(prefix, 0o755) != 0 && !(errno == EEXIST && isDirectory(prefix)) {
                let code = errno
                let reason: String
                if lstat(prefix, &status) == 0 && (status.st_mode & S_IFMT) == S_IFLNK {
                    reason = "\(prefix) is a symbolic link to a missing directory"
                } else if lstat(prefix, &status) == 0 && (status.st_mode & S_IFMT) != S_IFDIR {
                    reason = "\(prefix) is not a directory"
                } else {
                    reason = "\(prefix): \(SystemError.text(code))"
                }
                throw NTKError(.cannotCreate, "cannot create the \(role == "--out" ? "output" : role) directory \(path): \(reason)")
            }
        }
    }

    /// Writes all of `buffer` to `fd` at `offset` (or at the current position when nil),
    /// retrying short and interrupted writes. Returns the failure's reason, or nil.
    static func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, at offset: Int? = nil) -> String? {
        var done = 0
        while done < buffer.count {
            let chunk = min(buffer.count - done, 1 << 30)
            let written = offset.map { pwrite(fd, buffer.baseAddress! + done, chunk, off_t($0 + done)) }
                ?? write(fd, buffer.baseAddress! + done, chunk)
            if written < 0 {
                if errno == EINTR { continue }
                return SystemError.text(errno)
            }
            done += written
        }
        return nil
    }

    /// Creates (or truncates) `path`, never through a symbolic link, writes `parts` one
    /// after the other and flushes them to disk. Throws `cannotCreate` (73) when the file
    /// cannot be created and `ioError` (74) when a write or the flush fails (a full disk
    /// included); the partial file is removed then.
    static func writeFile(_ path: String, parts: [UnsafeRawBufferPointer], sync: Bool = true) throws(NTKError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { throw NTKError(.cannotCreate, "cannot create \(path): \(SystemError.text(errno))") }
        var failure: String? = nil
        for buffer in parts where failure == nil && buffer.count > 0 { failure = writeAll(fd, buffer) }
        if failure == nil && sync && fsync(fd) != 0 { failure = SystemError.text(errno) }
        if close(fd) != 0 && failure == nil { failure = SystemError.text(errno) }
        if let failure {
            unlink(path)
            throw NTKError(.ioError, failure)
        }
    }

    /// `writeFile` for `Data` values.
    static func writeFile(_ path: String, parts: [Data], sync: Bool = true) throws(NTKError) {
        func nest(_ index: Int, _ buffers: [UnsafeRawBufferPointer]) throws(NTKError) {
            if index == parts.count { return try writeFile(path, parts: buffers, sync: sync) }
            let result: Result<Void, NTKError> = parts[index].withUnsafeBytes { raw in
                do throws(NTKError) { try nest(index + 1, buffers + [raw]); return .success(()) } catch { return .failure(error) }
            }
            try result.get()
        }
        try nest(0, [])
    }

    /// Flushes a directory's entries (after renames into it). Best effort.
    static func syncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { _ = fsync(fd); close(fd) }
    }
}
