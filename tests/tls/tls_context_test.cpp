// Loading the server's and the client's TLS contexts: every mistake an operator can make with
// the files gives a Status naming the file and the cause, never an exception.

#include "messenger/tls/tls_context.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "messenger/codec/status.h"
#include "test_pki.h"

namespace messenger {
namespace {

using testing::Pki;

class TlsContextTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(Pki().ok()) << "make-test-certs failed"; }

  static std::string Write(const std::string& name, const std::string& text) {
    const std::string path = Pki().File(name);
    std::ofstream(path) << text;
    return path;
  }
};

TEST_F(TlsContextTest, LoadsAMatchingCertificateAndKey) {
  Result<std::shared_ptr<const TlsServerContext>> context =
      TlsServerContext::Load(Pki().File("server.pem"), Pki().File("server.key"));
  ASSERT_TRUE(context.ok()) << context.status().ToString();
  const std::string& summary = context.value()->summary();
  EXPECT_NE(summary.find("CN=server"), std::string::npos) << summary;
  EXPECT_NE(summary.find("valid until"), std::string::npos) << summary;
  EXPECT_EQ(summary.find("EXPIRED"), std::string::npos) << summary;
}

TEST_F(TlsContextTest, SummaryWarnsOfAnExpiredCertificate) {
  Result<std::shared_ptr<const TlsServerContext>> context =
      TlsServerContext::Load(Pki().File("expired.pem"), Pki().File("expired.key"));
  ASSERT_TRUE(context.ok()) << context.status().ToString();
  EXPECT_NE(context.value()->summary().find("EXPIRED"), std::string::npos);
}

TEST_F(TlsContextTest, MissingFilesAreNamedWithTheCause) {
  const std::string missing = Pki().File("no-such.pem");
  Status status = TlsServerContext::Load(missing, Pki().File("server.key")).status();
  EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(status.message().find(missing), std::string::npos) << status.ToString();
  EXPECT_NE(status.message().find("No such file or directory"), std::string::npos);

  status = TlsServerContext::Load(Pki().File("server.pem"), missing).status();
  EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(status.message().find("key file '" + missing + "'"), std::string::npos)
      << status.ToString();
}

TEST_F(TlsContextTest, KeyThatDoesNotMatchTheCertificateIsRefused) {
  const Status status =
      TlsServerContext::Load(Pki().File("server.pem"), Pki().File("wrong-host.key")).status();
  EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(status.message().find("does not match"), std::string::npos) << status.ToString();
  EXPECT_NE(status.message().find(Pki().File("wrong-host.key")), std::string::npos);
  EXPECT_NE(status.message().find(Pki().File("server.pem")), std::string::npos);
}

TEST_F(TlsContextTest, FilesOfTheWrongKindAreRefused) {
  // A key where the certificate belongs, a certificate where the key belongs.
  Status status =
      TlsServerContext::Load(Pki().File("server.key"), Pki().File("server.key")).status();
  EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(status.message().find("no PEM certificate"), std::string::npos) << status.ToString();
  status = TlsServerContext::Load(Pki().File("server.pem"), Pki().File("server.pem")).status();
  EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(status.message().find("no PEM private key"), std::string::npos) << status.ToString();
  // PEM armour around garbage.
  const std::string garbage = Write("garbage.pem",
                                    "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n"
                                    "-----END CERTIFICATE-----\n");
  status = TlsServerContext::Load(garbage, Pki().File("server.key")).status();
  EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(status.message().find("cannot load the TLS certificate chain from '" + garbage),
            std::string::npos)
      << status.ToString();
  // A directory.
  status = TlsServerContext::Load(Pki().dir().string(), Pki().File("server.key")).status();
  EXPECT_NE(status.message().find("is a directory"), std::string::npos) << status.ToString();
}

TEST_F(TlsContextTest, EncryptedKeyIsRefusedWithAReason) {
  const std::string encrypted = Pki().File("encrypted.key");
  const std::string command = "openssl pkey -in '" + Pki().File("server.key") +
                              "' -aes256 -passout pass:secret -out '" + encrypted + "' 2>/dev/null";
  ASSERT_EQ(std::system(command.c_str()), 0);
  const Status status = TlsServerContext::Load(Pki().File("server.pem"), encrypted).status();
  EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(status.message().find("encrypted"), std::string::npos) << status.ToString();
}

TEST_F(TlsContextTest, ClientContextNamesAMissingOrEmptyCaFile) {
  const std::string missing = Pki().File("no-such-ca.pem");
  Status status = TlsClientContext::Create(missing, /*insecure=*/false).status();
  EXPECT_EQ(status.code(), ErrorCode::kTlsFailed);
  EXPECT_NE(status.message().find(missing), std::string::npos) << status.ToString();
  EXPECT_NE(status.message().find("No such file or directory"), std::string::npos);

  status = TlsClientContext::Create(Write("empty.pem", ""), /*insecure=*/false).status();
  EXPECT_EQ(status.code(), ErrorCode::kTlsFailed);
  EXPECT_NE(status.message().find("no PEM certificate"), std::string::npos) << status.ToString();
}

TEST_F(TlsContextTest, ClientContextsForEveryTrustChoice) {
  Result<std::shared_ptr<const TlsClientContext>> with_ca =
      TlsClientContext::Create(Pki().File("ca.pem"), false);
  ASSERT_TRUE(with_ca.ok()) << with_ca.status().ToString();
  EXPECT_FALSE(with_ca.value()->insecure());
  Result<std::shared_ptr<const TlsClientContext>> system = TlsClientContext::Create("", false);
  ASSERT_TRUE(system.ok()) << system.status().ToString();
  Result<std::shared_ptr<const TlsClientContext>> insecure = TlsClientContext::Create("", true);
  ASSERT_TRUE(insecure.ok()) << insecure.status().ToString();
  EXPECT_TRUE(insecure.value()->insecure());
}

}  // namespace
}  // namespace messenger
