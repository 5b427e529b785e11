--- :checkhealth diffill
local M = {}

local health = vim.health

function M.check()
  local diffill = require('diffill')

  health.start('Neovim')
  local v = vim.version()
  local version = ('%d.%d.%d'):format(v.major, v.minor, v.patch)
  if diffill.has_native_inline() then
    health.ok(('Neovim %s: ghost text from vim.lsp.inline_completion'):format(version))
  elseif vim.fn.has('nvim-0.10') == 1 then
    health.ok(('Neovim %s: ghost text drawn by diffill (no vim.lsp.inline_completion before 0.12)'):format(version))
  else
    health.error(('Neovim %s is too old: diffill needs 0.10 or later (inline virtual text)'):format(version))
  end
  if vim.lsp.config and vim.lsp.enable then
    health.ok('vim.lsp.config / vim.lsp.enable: the client starts on FileType')
  else
    health.info('no vim.lsp.config (before 0.11): the client is started by a FileType autocmd')
  end
  local key = diffill.options.accept_key
  if key then
    health.ok(('accept key: %s (insert mode, in buffers the server is attached to)'):format(key))
  else
    health.info('accept key: none (call require("diffill").accept() from your own mapping)')
  end

  health.start('Server')
  local cmd = diffill.server_cmd()
  local exe = vim.fn.exepath(cmd[1])
  if exe == '' then
    health.error(('`%s` was not found'):format(cmd[1]), {
      'Install diffill (pip install diffill) or set `cmd` / `python` in require("diffill").setup{}',
    })
  else
    health.ok(('server command: %s'):format(table.concat(vim.list_extend({ exe }, vim.list_slice(cmd, 2)), ' ')))
  end

  local settings = diffill.options.settings or {}
  if settings.backend == 'remote' then
    local remote = settings.remote or {}
    local name = diffill.api_key_env()
    health.info(('backend: remote, %s (%s endpoint)'):format(remote.url or '(remote.url not set)', remote.endpoint or 'completions'))
    if diffill.options.remote_key_cmd then
      health.ok(('key: from remote_key_cmd, given to the server as %s'):format(name))
    elseif vim.env[name] and vim.env[name] ~= '' then
      health.ok(('key: %s is set in the environment'):format(name))
    else
      health.info(('key: %s is not set (fine for a server without --api-key)'):format(name))
    end
  end

  local clients = diffill.clients()
  if #clients == 0 then
    health.info('no diffill server is running: open a file to start one')
    return
  end
  for _, client in ipairs(clients) do
    local info = client.server_info or {}
    local supports = client.server_capabilities and client.server_capabilities.inlineCompletionProvider
    local label = ('server %d (%s %s)'):format(client.id, info.name or 'diffill', info.version or '')
    if supports then
      health.ok(label .. ': answers textDocument/inlineCompletion')
    else
      health.warn(label .. ': does not offer inline completion')
    end
    local status = diffill.status_by_client[client.id]
    if not status then
      health.info('model: no status from the server yet')
    elseif status.state == 'error' then
      health.error('model: ' .. (status.message or 'error'), { 'Run `diffill serve --check` in a shell for details' })
    elseif status.state == 'loading' then
      health.info('model: loading (' .. (status.message or '') .. ')')
    else
      local latency = type(status.latency_ms) == 'number' and (', last completion %d ms'):format(status.latency_ms) or ''
      health.ok(('model: %s%s (%s)'):format(status.state, latency, status.message or ''))
    end
  end
end

return M
