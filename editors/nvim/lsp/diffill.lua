-- Default client config for `vim.lsp.enable('diffill')` (Neovim >= 0.11). `require('diffill').setup{}`
-- replaces it with the plugin's options, the status handler and the keys.
local ok, diffill = pcall(require, 'diffill')
return {
  cmd = ok and diffill.server_cmd(diffill.defaults) or { 'diffill', 'serve' },
  root_markers = { '.git' },
  capabilities = {
    textDocument = { inlineCompletion = { dynamicRegistration = false } },
  },
}
