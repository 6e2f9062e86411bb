defmodule Tether.Options do
  @moduledoc false
  # Option and argument errors as an Elixir caller reads them. `:tether_options` words its
  # messages for Erlang (`got <<"x">>`); after an error the wrappers run the same check
  # again through `:tether_options.explain/3` with `inspect/2` writing the values
  # (`got "x"`). Nothing runs on the success path.

  @doc false
  @spec keyword!(term(), String.t()) :: :ok
  def keyword!(opts, _where) when is_list(opts), do: :ok

  def keyword!(opts, where),
    do:
      raise(ArgumentError,
        "#{where} takes its options as a keyword list (e.g. [modules: [\"my_handlers\"]]), got: " <>
          inspect(opts, limit: 5)
      )

  @doc false
  @spec timeout!(term(), String.t()) :: :ok
  # Erlang's longest timer and `receive ... after` wait: a longer one fails where it is used.
  def timeout!(t, _what) when (is_integer(t) and t >= 0 and t <= 4_294_967_295) or t == :infinity, do: :ok

  def timeout!(t, what),
    do:
      raise(
        ArgumentError,
        "#{what} must be a non-negative integer (milliseconds) up to 4294967295 (49 days), or :infinity, " <>
          "got: #{inspect(t)}"
      )

  @doc """
  `reason` with its message written for Elixir, when it is the option or argument error that
  `kind`'s check gives for `input`; any other reason as it is.

      iex> Tether.Options.reword(:worker, [python: "", modules: ["m"]], {:bad_option, :python, "..."})
      {:bad_option, :python, ~s(expected a non-empty string, got "")}
  """
  @spec reword(:tether_options.kind(), term(), term()) :: term()
  def reword(kind, input, {:bad_option, :resume, _} = reason)
      when kind in [:stream_reader, :stream_writer] and is_list(input) do
    # The checkpoint is checked by tether_stream itself, which words the same message with `show`.
    with {:ok, cp} <- Keyword.fetch(input, :resume),
         {:error, reworded} <- :tether_stream.resume_point(cp, &show/2) do
      reworded
    else
      _ -> reason
    end
  end

  def reword(kind, input, {tag, key, _message} = reason) when tag in [:bad_option, :bad_argument] do
    case :tether_options.explain(kind, input, &show/2) do
      {:error, {^tag, ^key, message}} -> {tag, key, message}
      _ -> reason
    end
  end

  def reword(_kind, _input, reason), do: reason

  @doc false
  @spec raise!(:tether_options.kind(), term(), {:bad_option | :bad_argument, term(), String.t()}) :: no_return()
  def raise!(kind, input, reason), do: raise(ArgumentError, message(reword(kind, input, reason)))

  @doc false
  @spec message({:bad_option | :bad_argument, term(), String.t()}) :: String.t()
  def message({:bad_option, :options, message}), do: "invalid options: #{message}"
  def message({:bad_option, key, message}), do: "invalid option #{inspect(key)}: #{message}"
  def message({:bad_argument, which, message}), do: "invalid #{which}: #{message}"

  defp show(term, :infinity), do: inspect(term)
  defp show(term, depth), do: inspect(term, limit: depth)
end
