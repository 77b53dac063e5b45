#include "kr/steps/step.hpp"

namespace kr::steps {

Step prepare_step();
Step train_teacher_step();
Step bench_step();
Step train_generator_step();
Step sample_step();
Step generate_step();
Step distill_step();
Step mia_step();
Step report_step();
Step run_step();
Step status_step();
Step tune_step();
Step audit_step();
Step dp_accountant_step();
Step semantic_query_step();

const std::vector<Step>& registry() {
  static const std::vector<Step> steps = {
      prepare_step(), train_teacher_step(), train_generator_step(),
      sample_step(),  generate_step(),      distill_step(),
      tune_step(),    mia_step(),           audit_step(),
      report_step(),  bench_step(),         run_step(),
      status_step(),  dp_accountant_step(), semantic_query_step()};
  return steps;
}

const Step* find_step(const std::string& name) {
  for (const auto& step : registry()) {
    if (step.name == name) return &step;
  }
  return nullptr;
}

}  // namespace kr::steps
