-- Default client config for `vim.lsp.enable('diffill')` (Neovim >= 0.11). `require('diffill').setup{}`
-- extends it with the plugin's options, the status handler and the accept key.
return {
  cmd = { 'diffill', 'serve' },
  root_markers = { '.git' },
  capabilities = {
    textDocument = { inlineCompletion = { dynamicRegistration = false } },
  },
}
