//! `iot_emulation`: the IoT workload emulator (scenarios, placement through the marketplace,
//! open-loop timed requests to access nodes, records, reports and plots).
