#pragma once
// How a run's config.json records its data source (private to the jobs: nlohmann-json stays out of the
// public headers).

#include <optional>

#include <nlohmann/json.hpp>

#include "flatmin/data/sources.h"

namespace flatmin::jobs {

/// Writes "data_dir" (the directory) and "dataset" (kind, CIFAR-100 labels, image size) into `config`.
void record_data_source(nlohmann::ordered_json& config, const data::DataSource& source);
/// The source `config` (a parsed config.json) recorded; nullopt for a non-object or no record.
std::optional<data::DataSource> recorded_data_source(const nlohmann::json& config);

}  // namespace flatmin::jobs
