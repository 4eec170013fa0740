"""SDK projects: manifest.txt, config.json and the SDK's global config."""
