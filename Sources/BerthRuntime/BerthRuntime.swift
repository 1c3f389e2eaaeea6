// BerthRuntime
