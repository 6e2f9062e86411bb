defmodule Tether.Error do
  @moduledoc """
  Raised by the `!` variants (`Tether.Worker.call!/5`, `Tether.Pool.call!/5`)
  with the `reason` the plain function would have returned as `{:error, reason}`,
  and by `Tether.Stream.read/2` on a broken stream (`{:stream, why, info}`).

      iex> Exception.message(%Tether.Error{reason: :timeout})
      "the call did not finish before its timeout (one that had reached Python was cancelled there)"
  """

  defexception [:reason]

  @type t :: %__MODULE__{reason: term()}

  @impl true
  def message(%__MODULE__{reason: reason}), do: describe(reason)

  defp describe({:python, type, message, traceback}),
    do: "Python raised #{type}: #{message}\n#{traceback}"

  defp describe(:timeout),
    do: "the call did not finish before its timeout (one that had reached Python was cancelled there)"

  defp describe({:no_worker, why}),
    do:
      "no pool member is running, and the last could not start: #{start_error(why)}. The pool goes on " <>
        "trying (its log has each attempt); fix what keeps Python from starting"
  defp describe(:checkout_timeout), do: "no pool member became free before the checkout timeout"
  defp describe(:overloaded), do: "the pool's queue is full: every member is busy and max_queue callers wait"

  defp describe({:undefined_function, module, function}),
    do:
      "#{module}.#{function} cannot be called: the module is not in the worker's modules, or the function is " <>
        "private, missing, or only imported there (list it in the module's __all__ to offer it)"

  defp describe({:worker_exit, status}), do: "the Python process exited with status #{status} during the call"
  defp describe({:worker_down, why}), do: "the worker process is not running: #{inspect(why)}"
  defp describe({:pool_down, why}), do: "the pool process is not running: #{inspect(why)}"

  defp describe(:funs_refused),
    do: "a function (fun) cannot be sent to Python: pass data, and name the Python function to call instead"

  defp describe({:message_too_large, size, max}),
    do:
      "the call's arguments take #{size} bytes, over max_message (#{max}): lower shm_threshold so they go " <>
        "through shared memory, or raise max_message"

  defp describe({:embedded_too_deep, max}),
    do:
      "the reply holds embedded frames inside embedded frames more than #{max} levels deep (a forged chain, or " <>
        "a frame that names itself): refused"

  defp describe({:tether_not_installed, python, stderr}) do
    missing =
      case Regex.run(~r/No module named '([^']+)'/, stderr) do
        [_, name] when name != "tether" -> " (it needs #{name}, which that environment lacks)"
        _ -> ""
      end

    "#{python} cannot import tether#{missing}: install the tether wheel into that interpreter's environment " <>
      "(pip brings its dependencies), or pass python: the interpreter of the environment where it is installed"
  end

  defp describe({:bad_request, message}),
    do: "the request was refused before it ran (in arguments, $[0] is the first): #{message}"

  defp describe({:bad_etf, why}), do: "the ETF could not be decoded: #{why}"

  defp describe({:stream, why, %{chunk: chunk, hint: hint} = info}) do
    details = Map.drop(info, [:chunk, :hint, :stream_id, :checkpoint, :offset])
    extra = if map_size(details) == 0, do: "", else: " #{inspect(details)}"
    id = if info[:stream_id] in [nil, :undefined], do: "?", else: info[:stream_id]
    "stream #{id} chunk #{chunk}: #{why}#{extra}: #{hint}"
  end

  defp describe(reason)
       when is_tuple(reason) and elem(reason, 0) in [:newer_type, :old_type, :type_downgrade, :type_failed, :bad_type_term],
       do: Tether.Type.format_error(reason)

  defp describe(other), do: inspect(other)

  defp start_error({:import_error, module, type, message, _traceback}),
    do: "importing #{module} raised #{type}: #{message}"

  defp start_error(other), do: inspect(other, limit: 20, printable_limit: 500)
end
