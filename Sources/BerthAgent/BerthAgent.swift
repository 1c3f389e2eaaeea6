// BerthAgent
