//! The scheduling experiment (issue: offloaded scheduling). One *point* runs open-loop
//! dispersive load at one offered load under one setup (mode, policy, delay, mitigations) and
//! measures short- and long-request latency, throughput, stale decisions and the CPU spent on
//! scheduling on host cores. `experiment` runs the sweeps the report needs.

pub mod modes;
pub mod point;
pub mod workload;
