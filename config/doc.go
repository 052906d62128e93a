// Package config defines overlayd's configuration: the YAML schema, its
// defaults, strict decoding (unknown keys are errors) and validation whose
// errors name the offending line.
package config
