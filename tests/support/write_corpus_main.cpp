// messenger_write_corpus <PROTOCOL.md> <corpus dir>: regenerates the fuzz corpus files derived from
// the spec's vectors (see BuildCorpus in spec_vectors.h). Hand-made seeds, which do not start with
// "spec-", are left alone.
#include <cstdio>
#include <string>

#include "spec_vectors.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s <PROTOCOL.md> <fuzz corpus dir>\n", argv[0]);
    return 2;
  }
  std::string error;
  const auto vectors = messenger::spec::LoadSpecVectors(argv[1], error);
  if (!vectors) {
    std::fprintf(stderr, "%s\n", error.c_str());
    return 1;
  }
  const auto files = messenger::spec::BuildCorpus(*vectors);
  if (!messenger::spec::WriteCorpus(argv[2], files, error)) {
    std::fprintf(stderr, "%s\n", error.c_str());
    return 1;
  }
  std::printf("wrote %zu files under %s (%zu frame vectors, %zu bad-frame vectors)\n", files.size(),
              argv[2], vectors->frames.size(), vectors->bad_frames.size());
  return 0;
}
