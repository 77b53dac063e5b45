#include <gtest/gtest.h>

#include <cstdlib>

#include "fixtures.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/steps/pipeline.hpp"
#include "kr/steps/run_record.hpp"

namespace {

std::string message_of(const std::string& path) {
  try {
    kr::steps::read_pipeline(path);
  } catch (const kr::UsageError& error) {
    return error.what();
  }
  return "";
}

}  // namespace

TEST(Pipeline, ShippedDefinitionsParse) {
  for (const char* name : {"kr", "mia-only", "generator-only", "teacher-only", "ddpm"}) {
    const auto steps = kr::steps::read_pipeline(kr::steps::pipeline_path(name));
    EXPECT_FALSE(steps.empty()) << name;
  }
  const auto kr_steps = kr::steps::read_pipeline(kr::steps::pipeline_path("kr"));
  ASSERT_EQ(kr_steps.size(), 7u);
  EXPECT_EQ(kr_steps[0].step, "prepare");
  EXPECT_EQ(kr_steps[0].directory, "data");
  EXPECT_EQ(kr_steps[6].step, "report");
  EXPECT_EQ(kr_steps[6].directory, "-");
}

TEST(Pipeline, LinesCarryTheirOptionsAndCommentsAreSkipped) {
  kr::test::TempDir dir;
  const auto path = dir.path() + "/x.pipeline";
  kr::write_file_atomic(
      path, "# a comment\n\ntrain-generator  gen-b  --out {workdir}/gen-b --epochs 3\n");
  const auto steps = kr::steps::read_pipeline(path);
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].directory, "gen-b");
  EXPECT_EQ(steps[0].options,
            (std::vector<std::string>{"--out", "{workdir}/gen-b", "--epochs", "3"}));
  EXPECT_EQ(kr::steps::pipeline_path("some/file"), "some/file");
  EXPECT_EQ(kr::steps::pipeline_path("x.pipeline"), "x.pipeline");
}

TEST(Pipeline, BadDefinitionsNameFileAndLine) {
  kr::test::TempDir dir;
  const auto path = dir.path() + "/bad.pipeline";
  kr::write_file_atomic(path, "prepare data\ntrain-techer teacher\n");
  EXPECT_NE(message_of(path).find("bad.pipeline:2: no step named 'train-techer'"),
            std::string::npos)
      << message_of(path);
  kr::write_file_atomic(path, "prepare\n");
  EXPECT_NE(message_of(path).find(":1: 'prepare' needs a run directory"), std::string::npos);
  kr::write_file_atomic(path, "prepare ../elsewhere\n");
  EXPECT_NE(message_of(path).find("inside the workdir"), std::string::npos);
  kr::write_file_atomic(path, "run -\n");
  EXPECT_NE(message_of(path).find("no step named 'run'"), std::string::npos);
  kr::write_file_atomic(path, "# nothing\n");
  EXPECT_NE(message_of(path).find("no steps"), std::string::npos);
  EXPECT_NE(message_of(dir.path() + "/absent.pipeline").find("cannot open"), std::string::npos);
}

TEST(Pipeline, CompleteMeansRunJsonSaysSo) {
  kr::test::TempDir dir;
  EXPECT_FALSE(kr::steps::run_complete(dir.path()));
  kr::write_file_atomic(dir.path() + "/run.json", "{\"status\": \"running\"}");
  EXPECT_FALSE(kr::steps::run_complete(dir.path()));
  kr::write_file_atomic(dir.path() + "/run.json", "{\"status\": \"comp");  // truncated
  EXPECT_FALSE(kr::steps::run_complete(dir.path()));
  kr::write_file_atomic(dir.path() + "/run.json", "{\"status\": \"complete\"}");
  EXPECT_TRUE(kr::steps::run_complete(dir.path()));
}
