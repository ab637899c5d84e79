// Image references: the docker/podman normalisation rules and the errors for bad ones.
#include "Reference.h"

#include <mobileops/abi.h>
#include <mobileops/plugin.hpp>

#include <gtest/gtest.h>

using mobileops::storage::Reference;

namespace {

const std::string hexA(64, 'a');

std::string parseError(const std::string &text) {
    try {
        Reference::parse(text);
    } catch (const mobileops::sdk::Error &e) {
        EXPECT_EQ(e.code(), MO_E_INVALID);
        return e.what();
    }
    ADD_FAILURE() << "parse(" << text << ") did not throw";
    return "";
}

TEST(Reference, ShortNameIsDockerHubLibrary) {
    auto r = Reference::parse("busybox");
    EXPECT_EQ(r.registry, "docker.io");
    EXPECT_EQ(r.repository, "library/busybox");
    EXPECT_EQ(r.tag, "latest");
    EXPECT_EQ(r.digest, "");
    EXPECT_EQ(r.str(), "docker.io/library/busybox:latest");
    EXPECT_EQ(r.familiar(), "busybox:latest");
    EXPECT_EQ(r.name(), "docker.io/library/busybox");
    EXPECT_EQ(r.tagOrDigest(), "latest");
    EXPECT_FALSE(r.isLocalhost());
}

TEST(Reference, DockerHubSpellings) {
    EXPECT_EQ(Reference::parse("docker.io/busybox:1.36").str(), "docker.io/library/busybox:1.36");
    EXPECT_EQ(Reference::parse("index.docker.io/library/busybox").str(),
              "docker.io/library/busybox:latest");
    auto user = Reference::parse("someone/tool:v2");
    EXPECT_EQ(user.registry, "docker.io");
    EXPECT_EQ(user.repository, "someone/tool");
    EXPECT_EQ(user.familiar(), "docker.io/someone/tool:v2");
}

TEST(Reference, RegistryIsFirstComponentWithDotColonOrLocalhost) {
    auto a = Reference::parse("localhost:5000/a/b:1.0");
    EXPECT_EQ(a.registry, "localhost:5000");
    EXPECT_EQ(a.repository, "a/b");
    EXPECT_EQ(a.tag, "1.0");
    EXPECT_TRUE(a.isLocalhost());
    EXPECT_EQ(a.familiar(), "localhost:5000/a/b:1.0");

    auto b = Reference::parse("localhost/x");
    EXPECT_EQ(b.registry, "localhost");
    EXPECT_EQ(b.repository, "x");

    auto c = Reference::parse("reg.example/x");
    EXPECT_EQ(c.registry, "reg.example");
    EXPECT_EQ(c.repository, "x");
    EXPECT_FALSE(c.isLocalhost());

    // Without a dot, colon or "localhost", the first component is a Docker Hub user.
    auto d = Reference::parse("myhost/x");
    EXPECT_EQ(d.registry, "docker.io");
    EXPECT_EQ(d.repository, "myhost/x");

    // "localhost:5000" alone is the repository `localhost` with tag `5000`, as docker reads it.
    auto e = Reference::parse("localhost:5000");
    EXPECT_EQ(e.repository, "library/localhost");
    EXPECT_EQ(e.tag, "5000");
}

TEST(Reference, Digests) {
    auto a = Reference::parse("reg.example/x@sha256:" + hexA);
    EXPECT_EQ(a.tag, "");
    EXPECT_EQ(a.digest, "sha256:" + hexA);
    EXPECT_EQ(a.tagOrDigest(), "sha256:" + hexA);
    EXPECT_EQ(a.str(), "reg.example/x@sha256:" + hexA);

    auto b = Reference::parse("busybox:1.36@sha256:" + hexA);
    EXPECT_EQ(b.tag, "1.36");
    EXPECT_EQ(b.tagOrDigest(), "sha256:" + hexA); // the digest wins
    EXPECT_EQ(b.familiar(), "busybox:1.36@sha256:" + hexA);
    EXPECT_EQ(b.name(), "docker.io/library/busybox");
}

TEST(Reference, Localhost) {
    EXPECT_TRUE(Reference::parse("127.0.0.1:41234/a").isLocalhost());
    EXPECT_TRUE(Reference::parse("127.1.2.3/a").isLocalhost());
    EXPECT_TRUE(Reference::parse("[::1]:5000/a").isLocalhost());
    EXPECT_EQ(Reference::parse("[::1]:5000/a").registry, "[::1]:5000");
    EXPECT_FALSE(Reference::parse("[fd00::1]:5000/a").isLocalhost());
    EXPECT_FALSE(Reference::parse("128.0.0.1/a").isLocalhost());
    EXPECT_FALSE(Reference::parse("localhost.example/a").isLocalhost());
}

TEST(Reference, SeparatorsInRepository) {
    EXPECT_EQ(Reference::parse("r.io/a.b_c__d-e---f/g").repository, "a.b_c__d-e---f/g");
    EXPECT_EQ(Reference::parse("r.io/x:Tag_1.0-rc").tag, "Tag_1.0-rc");
    EXPECT_EQ(Reference::parse("r.io/x:" + std::string(128, 't')).tag.size(), 128u);
}

TEST(Reference, ErrorsNameTheReferenceAndTheProblem) {
    EXPECT_EQ(parseError(""), "image reference is empty");
    EXPECT_EQ(parseError("Busybox"),
              "reference `Busybox`: repository `library/Busybox` must be lowercase");
    EXPECT_EQ(parseError("r.io/a//b"),
              "reference `r.io/a//b`: repository `a//b` has an empty path component");
    EXPECT_EQ(parseError("r.io/a/"), "reference `r.io/a/`: repository `a/` has an empty path "
                                     "component");
    EXPECT_EQ(parseError("r.io/-a"), "reference `r.io/-a`: repository `-a` component `-a` must "
                                     "start and end with a letter or digit");
    EXPECT_EQ(parseError("r.io/a..b"), "reference `r.io/a..b`: repository `a..b` component "
                                       "`a..b` has the separator `..` (one `.`, `_`, `__` or "
                                       "dashes)");
    EXPECT_EQ(parseError("r.io/a+b"),
              "reference `r.io/a+b`: repository `a+b` has an invalid character `+`");
    EXPECT_EQ(parseError("busybox:"), "reference `busybox:`: tag `` must be 1-128 of "
                                      "[A-Za-z0-9_.-], not starting with `.` or `-`");
    EXPECT_NE(parseError("busybox:.x").find("tag `.x`"), std::string::npos);
    EXPECT_NE(parseError("busybox:" + std::string(129, 't')).find("must be 1-128"),
              std::string::npos);
    EXPECT_EQ(parseError("busybox@md5:abc"),
              "reference `busybox@md5:abc`: digest `md5:abc` is not a sha256 digest");
    EXPECT_NE(parseError("busybox@sha256:abc")
                  .find("reference `busybox@sha256:abc`: digest "
                        "`sha256:abc` is not"),
              std::string::npos);
    EXPECT_EQ(parseError(":tag"), "reference `:tag`: no repository name");
    EXPECT_EQ(parseError("bad host:1/x"),
              "reference `bad host:1/x`: contains a space, control or non-ASCII character");
    EXPECT_EQ(parseError("r.io:port/x"), "reference `r.io:port/x`: registry `r.io:port` is not "
                                         "host[:port]");
    EXPECT_EQ(parseError("r.io/" + std::string(260, 'a')),
              "reference `r.io/" + std::string(260, 'a') + "`: name is longer than 255 characters");
}

} // namespace
