#if canImport(Glibc)
import Glibc
#endif
import BerthClient
import BerthSystem
import Testing

// A remote agent with mutual TLS, over loopback: an admin runs containers; a viewer may
// only look; a client of another CA and a plain-TCP client are refused, and the agent
// keeps serving.


@Suite("Remote agent with mutual TLS (root)", .enabled(if: isRoot && Files.exists("/usr/bin/openssl"), "needs root and openssl"),
       .timeLimit(.minutes(3)))
struct RemoteTLSTests {
    @Test("admin runs, viewer only reads, another CA and plain TCP are refused")
    func roles() async throws {
        let certs = try TempDir("berth-certs")
        defer { certs.remove() }
        let d = certs.path
        let script = repoRoot + "/deploy/make-certs.sh"
        for args in [["ca"], ["agent", "agent", "127.0.0.1", "localhost"], ["client", "alice"], ["client", "bob", "viewer"]] {
            #expect(try runProgram(["/bin/bash", script, d] + args).status == 0)
        }
        try Files.makeDirectories(d + "/other")
        for args in [["ca"], ["client", "mallory"]] { #expect(try runProgram(["/bin/bash", script, d + "/other"] + args).status == 0) }
        try await withAgent(tcpPort: 0, extraArgs: ["--tls-cert", d + "/agent.pem", "--tls-key", d + "/agent-key.pem", "--tls-ca", d + "/ca.pem"]) { agent in
            let port = try #require(agent.tcpPort)
            _ = try await agent.clientWithImage()
            let host = "tcp://127.0.0.1:\(port)"
            func remote(_ who: String, _ args: [String], dir: String? = nil) throws -> ProcessOutput {
                let base = dir ?? d
                return try runProgram([binDir + "/berth", "-H", host, "--tls-ca", d + "/ca.pem", "--tls-cert", base + "/\(who).pem",
                                       "--tls-key", base + "/\(who)-key.pem"] + args)
            }
            let run = try remote("alice", ["run", "--rm", "busybox", "echo", "hello over TLS"])
            #expect(run.status == 0 && run.stdout == "hello over TLS\n", "\(run.stderr)")
            // The viewer reads but cannot change anything.
            #expect(try remote("bob", ["ps", "-a"]).status == 0)
            #expect(try remote("bob", ["info"]).status == 0)
            let denied = try remote("bob", ["run", "--rm", "busybox", "true"])
            #expect(denied.status != 0 && denied.stderr.contains("viewer"), "\(denied.stderr)")
            let hostDir = try TempDir("berth-viewer-hidden")
            defer { hostDir.remove() }
            _ = try remote("alice", ["run", "-d", "--name", "svc", "-v", "\(hostDir.path):/data", "busybox", "sleep", "100"])
            // A host path shows to the admin only.
            #expect(try remote("alice", ["inspect", "svc"]).stdout.contains(hostDir.path))
            let seen = try remote("bob", ["inspect", "svc"])
            #expect(seen.status == 0 && !seen.stdout.contains(hostDir.path) && !seen.stdout.contains(agent.dir.path), "\(seen.stdout)")
            #expect(!(try remote("bob", ["info"]).stdout.contains(agent.dir.path)))
            let execDenied = try remote("bob", ["exec", "svc", "true"])
            #expect(execDenied.status != 0 && execDenied.stderr.contains("needs the admin role"))
            #expect(try remote("bob", ["rm", "-f", "svc"]).status != 0)
            #expect(agent.log.contains("permission denied: tcp"), "\(agent.log)")
            // Another CA's client, and a plain client: refused; the agent goes on serving.
            let stranger = try remote("mallory", ["ps"], dir: d + "/other")
            #expect(stranger.status != 0)
            do {
                let plain = try await BerthClient.connect(to: host)
                _ = try? await plain.info()
                Issue.record("a plain TCP client got in")
                plain.close()
            } catch {}
            #expect(try remote("alice", ["rm", "-f", "svc"]).status == 0)
            #expect(try remote("alice", ["ps", "-a", "-q"]).stdout.isEmpty)
            // Half the TLS options is a usage error.
            let half = try runProgram([binDir + "/berth", "-H", host, "--tls-ca", d + "/ca.pem", "ps"])
            #expect(half.status == 64 && half.stderr.contains("needs all of"))
        }
    }

    @Test("no client certificate, an expired one, and handshakes beyond --max-connections are refused; the agent goes on")
    func refusals() async throws {
        let certs = try TempDir("berth-certs")
        defer { certs.remove() }
        let d = certs.path
        let script = repoRoot + "/deploy/make-certs.sh"
        for args in [["ca"], ["agent", "agent", "127.0.0.1"], ["client", "alice"]] {
            #expect(try runProgram(["/bin/bash", script, d] + args).status == 0)
        }
        // A client certificate of the right CA that expired in 2020 (openssl x509 cannot
        // back-date; openssl ca can).
        try Files.makeDirectories(d + "/db")
        try Files.writeAtomically(d + "/db/index", [])
        try Files.writeAtomically(d + "/db/serial", Array("1000\n".utf8))
        try Files.writeAtomically(d + "/ca.cnf", Array("""
            [ca]
            default_ca = lab
            [lab]
            database = \(d)/db/index
            new_certs_dir = \(d)/db
            serial = \(d)/db/serial
            default_md = sha256
            policy = any
            x509_extensions = ext
            [any]
            commonName = supplied
            organizationalUnitName = optional
            [ext]
            basicConstraints = critical,CA:FALSE
            keyUsage = critical,digitalSignature
            extendedKeyUsage = clientAuth

            """.utf8))
        #expect(try runProgram(["/usr/bin/openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", d + "/old-key.pem"]).status == 0)
        #expect(try runProgram(["/usr/bin/openssl", "req", "-new", "-key", d + "/old-key.pem", "-subj", "/CN=old/OU=admin", "-out", d + "/old.csr"]).status == 0)
        let signed = try runProgram(["/usr/bin/openssl", "ca", "-batch", "-config", d + "/ca.cnf", "-cert", d + "/ca.pem", "-keyfile", d + "/ca-key.pem",
                                     "-in", d + "/old.csr", "-out", d + "/old.pem", "-startdate", "20200101000000Z", "-enddate", "20200201000000Z"])
        #expect(signed.status == 0, "\(signed.stderr)")

        // A long handshake timeout, so that the silent sockets below hold their slots for the whole test.
        try await withAgent(tcpPort: 0, extraArgs: ["--tls-cert", d + "/agent.pem", "--tls-key", d + "/agent-key.pem", "--tls-ca", d + "/ca.pem",
                                                       "--max-connections", "4", "--handshake-timeout", "120"]) { agent in
            let port = try #require(agent.tcpPort)
            let host = "tcp://127.0.0.1:\(port)"
            func remote(_ who: String, _ args: [String]) throws -> ProcessOutput {
                try runProgram([binDir + "/berth", "-H", host, "--tls-ca", d + "/ca.pem", "--tls-cert", d + "/\(who).pem",
                                "--tls-key", d + "/\(who)-key.pem"] + args)
            }
            #expect(try remote("alice", ["ps"]).status == 0)

            // Expired: refused by the agent's verification, which says why in its log.
            let expired = try remote("old", ["ps"])
            #expect(expired.status != 0 && !expired.stderr.isEmpty)
            #expect(agent.log.contains("expired"), "\(agent.log)")

            // No client certificate at all (openssl s_client offers none): refused before any request.
            let bare = try runProgram(["/usr/bin/openssl", "s_client", "-connect", "127.0.0.1:\(port)", "-CAfile", d + "/ca.pem", "-quiet"],
                                      stdin: "\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{1}\u{0}")
            #expect(!bare.stdout.contains("berth"))
            var refusedBare = false
            for _ in 0..<100 where !refusedBare {
                refusedBare = agent.log.contains("did not return a certificate")
                if !refusedBare { usleep(50_000) }
            }
            #expect(refusedBare, "\(agent.log)")
            #expect(try remote("alice", ["ps"]).status == 0)

            // Four silent sockets hold the four slots in their handshakes; a fifth is closed
            // at once, and so is a real client's, until the silent ones go.
            var silent: [FileDescriptor] = []
            defer { for fd in silent { fd.close() } }
            for _ in 0..<4 { silent.append(try SocketAddress.connect(.tcp(host: "127.0.0.1", port: port))) }
            var heldAll = false
            for _ in 0..<200 where !heldAll {
                let extra = try SocketAddress.connect(.tcp(host: "127.0.0.1", port: port))
                var pfd = pollfd(fd: extra.rawValue, events: Int16(POLLIN), revents: 0)
                var byte: UInt8 = 0
                heldAll = poll(&pfd, 1, 5000) == 1 && read(extra.rawValue, &byte, 1) <= 0
                extra.close()
                if !heldAll { usleep(50_000) }
            }
            #expect(heldAll, "a connection beyond --max-connections was not closed")
            #expect(agent.log.contains("4 connections already"), "\(agent.log)")
            let crowded = try remote("alice", ["ps"])
            #expect(crowded.status != 0)
            for fd in silent { fd.close() }
            silent = []
            var back = false
            for _ in 0..<100 where !back {
                back = try remote("alice", ["ps"]).status == 0
                if !back { usleep(100_000) }
            }
            #expect(back, "the agent did not give the slots back")
        }
    }
}
