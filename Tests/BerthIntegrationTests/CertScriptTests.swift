#if canImport(Glibc)
import Glibc
#endif
import BerthSystem
import Testing

/// deploy/make-certs.sh: a lab CA, an agent certificate with its SANs and serverAuth,
/// client certificates with clientAuth and their role in OU, keys 0600.
@Suite("make-certs.sh", .enabled(if: Files.exists("/usr/bin/openssl"), "needs openssl"))
struct CertScriptTests {
    @Test func labCertificates() throws {
        let dir = try TempDir("berth-certs")
        defer { dir.remove() }
        let script = repoRoot + "/deploy/make-certs.sh"
        for args in [["ca"], ["agent", "node1", "node1.lab", "127.0.0.1"], ["client", "alice"], ["client", "bob", "viewer"]] {
            let r = try runProgram(["/bin/bash", script, dir.path] + args)
            #expect(r.status == 0, "\(args): \(r.stderr)")
        }
        let verify = try runProgram(["/usr/bin/openssl", "verify", "-CAfile", dir.path + "/ca.pem",
                                     dir.path + "/node1.pem", dir.path + "/alice.pem", dir.path + "/bob.pem"])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        let agent = try runProgram(["/usr/bin/openssl", "x509", "-in", dir.path + "/node1.pem", "-noout", "-ext", "subjectAltName,extendedKeyUsage"])
        #expect(agent.stdout.contains("DNS:node1.lab") && agent.stdout.contains("IP Address:127.0.0.1") && agent.stdout.contains("Server Authentication"))
        let bob = try runProgram(["/usr/bin/openssl", "x509", "-in", dir.path + "/bob.pem", "-noout", "-subject", "-ext", "extendedKeyUsage"])
        #expect(bob.stdout.contains("OU = viewer") && bob.stdout.contains("Client Authentication"))
        for key in ["ca-key.pem", "node1-key.pem", "alice-key.pem", "bob-key.pem"] {
            var st = stat()
            #expect(stat(dir.path + "/" + key, &st) == 0 && st.st_mode & 0o777 == 0o600, "\(key)")
        }
        // Bad input: a bad role, an agent without SANs, a client before the CA.
        #expect(try runProgram(["/bin/bash", script, dir.path, "client", "eve", "root"]).status == 64)
        #expect(try runProgram(["/bin/bash", script, dir.path, "agent", "node2"]).status == 64)
        let other = try TempDir("berth-certs")
        defer { other.remove() }
        #expect(try runProgram(["/bin/bash", script, other.path, "client", "x"]).status != 0)
    }
}
