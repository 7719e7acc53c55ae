package openconnect

import "switchyard/config"

func configSettings(yaml string) (config.Settings, error) {
	return config.NewSettings("/etc/switchyard/test.yaml", "protocols[0].settings", []byte(yaml))
}
