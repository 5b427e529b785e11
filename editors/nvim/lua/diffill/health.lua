--- :checkhealth diffill
local M = {}

local health = vim.health

function M.check()
  local diffill = require('diffill')

  health.start('Neovim')
  local v = vim.version()
  local version = ('%d.%d.%d'):format(v.major, v.minor, v.patch)
  if vim.fn.has('nvim-0.10') == 1 then
    local native = diffill.has_native_inline()
        and ' (vim.lsp.inline_completion is not used: it draws over the code right of the cursor)' or ''
    health.ok(('Neovim %s: ghost text drawn by diffill with inline extmarks%s'):format(version, native))
  else
    health.error(('Neovim %s is too old: diffill needs 0.10 or later (inline virtual text)'):format(version))
  end
  if vim.lsp.config and vim.lsp.enable then
    health.ok('vim.lsp.config / vim.lsp.enable: the client starts on FileType')
  else
    health.info('no vim.lsp.config (before 0.11): the client is started by a FileType autocmd')
  end
  local o = diffill.options
  local keys = {}
  for _, k in ipairs({ { 'accept', o.accept_key }, { 'accept word', o.accept_word_key },
    { 'accept line', o.accept_line_key }, { 'dismiss', o.dismiss_key }, { 'trigger', o.trigger_key } }) do
    keys[#keys + 1] = ('%s %s'):format(k[1], k[2] or 'none')
  end
  health.ok('insert-mode keys: ' .. table.concat(keys, ', ') .. ' (in buffers the server is attached to)')

  health.start('Server')
  local cmd, where = diffill.server_cmd()
  local exe = cmd and vim.fn.exepath(cmd[1]) or ''
  if not cmd then
    local places = { 'PATH' }
    for _, place in ipairs(diffill.server_places()) do
      places[#places + 1] = place
    end
    health.error('the diffill server was not found (looked on ' .. table.concat(places, ', ') .. ')',
      diffill.not_found_hint)
  elseif exe == '' then
    health.error(('`%s` (from %s) is not an executable'):format(cmd[1], where),
      { 'set the path of the server: require("diffill").setup({ cmd = { "/path/to/diffill", "serve" } })' })
  else
    health.ok(('server command: %s (from %s)'):format(
      table.concat(vim.list_extend({ exe }, vim.list_slice(cmd, 2)), ' '), where))
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

  if cmd and exe ~= '' then
    M.check_settings(cmd)
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
      health.error('model: ' .. (status.message or 'error'), { 'model setting: ' .. tostring((diffill.options.settings or {}).model or '(not set: the embedded model)'),
        'see `:Diffill log` for the server\'s and the worker\'s messages' })
    elseif status.state == 'loading' then
      health.info('model: loading (' .. (status.message or '') .. ')')
    else
      local latency = type(status.latency_ms) == 'number' and (', last completion %d ms'):format(status.latency_ms) or ''
      health.ok(('model: %s%s (%s)'):format(status.state, latency, status.message or ''))
    end
  end
end

--- `diffill serve --check --settings JSON` with the plugin's own settings: it loads the model once
--- (or asks the remote server), so a wrong model or setting in setup() shows here.
function M.check_settings(cmd)
  local diffill = require('diffill')
  local serve = nil
  for i, arg in ipairs(cmd) do
    if arg == 'serve' then
      serve = i
    end
  end
  health.start('Settings (diffill serve --check)')
  if not serve then
    health.info('the server command has no `serve` argument: run `diffill serve --check --settings JSON` yourself')
    return
  end
  local settings = vim.json.encode(diffill.server_settings())
  local args = vim.list_slice(cmd, 1, serve)
  vim.list_extend(args, { '--check', '--settings', settings })
  local ok, proc = pcall(vim.system, args, { text = true, env = diffill.server_env(), stdin = false })
  if not ok then
    health.error('could not run ' .. cmd[1] .. ': ' .. tostring(proc))
    return
  end
  local done = proc:wait(diffill.options.health_check_timeout_ms)
  local shown = table.concat(vim.list_slice(args, 1, #args - 1), ' ') .. " '" .. settings .. "'"
  local lines = vim.split(vim.trim((done.stdout or '') .. '\n' .. (done.stderr or '')), '\n')
  local problems, model = {}, nil
  for _, line in ipairs(lines) do
    if line:match('^model: ') and not line:match('^model: loading') then
      model = model and (model .. '; ' .. line:sub(8)) or line:sub(8)
    end
    if line:match('^settings: ') and not line:match('^settings: {') then
      problems[#problems + 1] = line
    end
  end
  if done.signal ~= 0 or done.code == 124 or done.code == 137 then
    health.warn(('`diffill serve --check` did not finish within %d s'):format(diffill.options.health_check_timeout_ms / 1000),
      { 'run it in a shell: ' .. shown })
    return
  end
  for _, p in ipairs(problems) do
    health.warn(p)
  end
  if done.code == 0 then
    health.ok('your settings check out: ' .. (model or 'ok'))
  else
    local tail = vim.list_slice(lines, math.max(1, #lines - 3), #lines)
    health.error('with your settings: ' .. (model or table.concat(tail, ' ')),
      { 'the model comes from settings.model in require("diffill").setup({ settings = { model = ... } })',
        'run it in a shell: ' .. shown })
  end
end

return M
