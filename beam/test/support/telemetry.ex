defmodule :telemetry do
  @moduledoc false
  # A stand-in for the optional third-party `:telemetry` library, which Hex
  # would provide in an application (Hex is unreachable here). It has the two
  # functions tether's tests use, with the library's signatures; handlers are
  # kept in :persistent_term.

  @spec attach(term(), [atom()], function(), term()) :: :ok | {:error, :already_exists}
  def attach(id, event, fun, config), do: attach_many(id, [event], fun, config)

  @spec attach_many(term(), [[atom()]], function(), term()) :: :ok | {:error, :already_exists}
  def attach_many(id, events, fun, config) do
    handlers = :persistent_term.get({__MODULE__, :handlers}, %{})

    if Map.has_key?(handlers, id) do
      {:error, :already_exists}
    else
      :persistent_term.put({__MODULE__, :handlers}, Map.put(handlers, id, {events, fun, config}))
    end
  end

  @spec detach(term()) :: :ok | {:error, :not_found}
  def detach(id) do
    handlers = :persistent_term.get({__MODULE__, :handlers}, %{})

    if Map.has_key?(handlers, id) do
      :persistent_term.put({__MODULE__, :handlers}, Map.delete(handlers, id))
    else
      {:error, :not_found}
    end
  end

  @spec execute([atom()], map(), map()) :: :ok
  def execute(event, measurements, metadata) do
    for {id, {events, fun, config}} <- :persistent_term.get({__MODULE__, :handlers}, %{}), event in events do
      try do
        fun.(event, measurements, metadata, config)
      rescue
        _ -> detach(id)
      end
    end

    :ok
  end
end
