// BerthClient
