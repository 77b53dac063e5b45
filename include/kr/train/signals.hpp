// Preemption requests: SIGUSR1 (Slurm's --signal) and SIGTERM (real preemption)
// set a flag that the trainer reads at the next step boundary.
#pragma once

namespace kr::train {

void install_stop_signal_handlers();
bool stop_requested();
void clear_stop_request();  // for tests

}  // namespace kr::train
