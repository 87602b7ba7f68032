export type Json =
  | string
  | number
  | boolean
  | null
  | { [key: string]: Json | undefined }
  | Json[]

export type Database = {
  api: {
    Tables: {
      thing_notes: {
        Row: {
          note: string
          thing_id: number
        }
        Insert: {
          note: string
          thing_id: number
        }
        Update: {
          note?: string
          thing_id?: number
        }
        Relationships: [
          {
            foreignKeyName: "thing_notes_thing_id_fkey"
            columns: ["thing_id"]
            isOneToOne: true
            referencedRelation: "things"
            referencedColumns: ["id"]
          },
        ]
      }
      things: {
        Row: {
          film_id: number | null
          id: number
          label: string | null
        }
        Insert: {
          film_id?: number | null
          id: number
          label?: string | null
        }
        Update: {
          film_id?: number | null
          id?: number
          label?: string | null
        }
        Relationships: []
      }
    }
    Views: {
      [_ in never]: never
    }
    Functions: {
      [_ in never]: never
    }
    Enums: {
      [_ in never]: never
    }
    CompositeTypes: {
      [_ in never]: never
    }
  }
  public: {
    Tables: {
      directors: {
        Row: {
          id: number
          name: string
        }
        Insert: {
          id?: number
          name: string
        }
        Update: {
          id?: number
          name?: string
        }
        Relationships: []
      }
      doska_local_store: {
        Row: {
          key: string
          store: string
          updated_at: string
          user_id: string
          value: string | null
          version: number
        }
        Insert: {
          key: string
          store: string
          updated_at?: string
          user_id?: string
          value?: string | null
          version?: number
        }
        Update: {
          key?: string
          store?: string
          updated_at?: string
          user_id?: string
          value?: string | null
          version?: number
        }
        Relationships: []
      }
      film_details: {
        Row: {
          film_id: number
          runtime: number | null
          spot: Database["public"]["CompositeTypes"]["point2"] | null
        }
        Insert: {
          film_id: number
          runtime?: number | null
          spot?: Database["public"]["CompositeTypes"]["point2"] | null
        }
        Update: {
          film_id?: number
          runtime?: number | null
          spot?: Database["public"]["CompositeTypes"]["point2"] | null
        }
        Relationships: [
          {
            foreignKeyName: "film_details_film_id_fkey"
            columns: ["film_id"]
            isOneToOne: true
            referencedRelation: "films"
            referencedColumns: ["id"]
          },
        ]
      }
      films: {
        Row: {
          created_at: string
          director_id: number | null
          flags: boolean[] | null
          id: number
          level: "low" | "high" | null
          meta: Json | null
          mood: Database["public"]["Enums"]["mood"]
          "Odd Name": string | null
          poster: string | null
          rating: number | null
          released: string | null
          slug: string | null
          tags: string[]
          title: string
          title_upper: string | null
          year: number | null
          full_title: string | null
        }
        Insert: {
          created_at?: string
          director_id?: number | null
          flags?: boolean[] | null
          id?: never
          level?: "low" | "high" | null
          meta?: Json | null
          mood?: Database["public"]["Enums"]["mood"]
          "Odd Name"?: string | null
          poster?: string | null
          rating?: number | null
          released?: string | null
          slug?: string | null
          tags?: string[]
          title: string
          title_upper?: never
          year?: number | null
        }
        Update: {
          created_at?: string
          director_id?: number | null
          flags?: boolean[] | null
          id?: never
          level?: "low" | "high" | null
          meta?: Json | null
          mood?: Database["public"]["Enums"]["mood"]
          "Odd Name"?: string | null
          poster?: string | null
          rating?: number | null
          released?: string | null
          slug?: string | null
          tags?: string[]
          title?: string
          title_upper?: never
          year?: number | null
        }
        Relationships: [
          {
            foreignKeyName: "films_director_id_fkey"
            columns: ["director_id"]
            isOneToOne: false
            referencedRelation: "directors"
            referencedColumns: ["id"]
          },
        ]
      }
    }
    Views: {
      film_counts: {
        Row: {
          director_id: number | null
          n: number | null
        }
        Relationships: []
      }
      film_titles: {
        Row: {
          id: number | null
          title: string | null
          year: number | null
        }
        Insert: {
          id?: number | null
          title?: string | null
          year?: number | null
        }
        Update: {
          id?: number | null
          title?: string | null
          year?: number | null
        }
        Relationships: []
      }
    }
    Functions: {
      add: {
        Args: { a: number; b?: number }
        Returns: number
      }
      echo: {
        Args: { payload: Json }
        Returns: Json
      }
      films_by_year: {
        Args: { y: number }
        Returns: {
          created_at: string
          director_id: number | null
          flags: boolean[] | null
          id: number
          level: "low" | "high" | null
          meta: Json | null
          mood: Database["public"]["Enums"]["mood"]
          "Odd Name": string | null
          poster: string | null
          rating: number | null
          released: string | null
          slug: string | null
          tags: string[]
          title: string
          title_upper: string | null
          year: number | null
        }[]
      }
      full_title: {
        Args: { "": Database["public"]["Tables"]["films"]["Row"] }
        Returns: string
      }
      moods: {
        Args: Record<PropertyKey, never>
        Returns: Database["public"]["Enums"]["mood"][]
      }
      over: {
        Args: { a: number } | { a: string }
        Returns: number
      }
      squares: {
        Args: { upto: number }
        Returns: {
          n: number
          sq: number
        }[]
      }
      touch: {
        Args: Record<PropertyKey, never>
        Returns: undefined
      }
    }
    Enums: {
      mood: "happy" | "sad" | "so-so"
    }
    CompositeTypes: {
      point2: {
        x: number | null
        y: number | null
      }
    }
  }
}

type DefaultSchema = Database[Extract<keyof Database, "public">]

export type Tables<
  DefaultSchemaTableNameOrOptions extends
    | keyof (DefaultSchema["Tables"] & DefaultSchema["Views"])
    | { schema: keyof Database },
  TableName extends DefaultSchemaTableNameOrOptions extends {
    schema: keyof Database
  }
    ? keyof (Database[DefaultSchemaTableNameOrOptions["schema"]]["Tables"] &
        Database[DefaultSchemaTableNameOrOptions["schema"]]["Views"])
    : never = never,
> = DefaultSchemaTableNameOrOptions extends { schema: keyof Database }
  ? (Database[DefaultSchemaTableNameOrOptions["schema"]]["Tables"] &
      Database[DefaultSchemaTableNameOrOptions["schema"]]["Views"])[TableName] extends {
      Row: infer R
    }
    ? R
    : never
  : DefaultSchemaTableNameOrOptions extends keyof (DefaultSchema["Tables"] &
        DefaultSchema["Views"])
    ? (DefaultSchema["Tables"] &
        DefaultSchema["Views"])[DefaultSchemaTableNameOrOptions] extends {
        Row: infer R
      }
      ? R
      : never
    : never

export type TablesInsert<
  DefaultSchemaTableNameOrOptions extends
    | keyof DefaultSchema["Tables"]
    | { schema: keyof Database },
  TableName extends DefaultSchemaTableNameOrOptions extends {
    schema: keyof Database
  }
    ? keyof Database[DefaultSchemaTableNameOrOptions["schema"]]["Tables"]
    : never = never,
> = DefaultSchemaTableNameOrOptions extends { schema: keyof Database }
  ? Database[DefaultSchemaTableNameOrOptions["schema"]]["Tables"][TableName] extends {
      Insert: infer I
    }
    ? I
    : never
  : DefaultSchemaTableNameOrOptions extends keyof DefaultSchema["Tables"]
    ? DefaultSchema["Tables"][DefaultSchemaTableNameOrOptions] extends {
        Insert: infer I
      }
      ? I
      : never
    : never

export type TablesUpdate<
  DefaultSchemaTableNameOrOptions extends
    | keyof DefaultSchema["Tables"]
    | { schema: keyof Database },
  TableName extends DefaultSchemaTableNameOrOptions extends {
    schema: keyof Database
  }
    ? keyof Database[DefaultSchemaTableNameOrOptions["schema"]]["Tables"]
    : never = never,
> = DefaultSchemaTableNameOrOptions extends { schema: keyof Database }
  ? Database[DefaultSchemaTableNameOrOptions["schema"]]["Tables"][TableName] extends {
      Update: infer U
    }
    ? U
    : never
  : DefaultSchemaTableNameOrOptions extends keyof DefaultSchema["Tables"]
    ? DefaultSchema["Tables"][DefaultSchemaTableNameOrOptions] extends {
        Update: infer U
      }
      ? U
      : never
    : never

export type Enums<
  DefaultSchemaEnumNameOrOptions extends
    | keyof DefaultSchema["Enums"]
    | { schema: keyof Database },
  EnumName extends DefaultSchemaEnumNameOrOptions extends {
    schema: keyof Database
  }
    ? keyof Database[DefaultSchemaEnumNameOrOptions["schema"]]["Enums"]
    : never = never,
> = DefaultSchemaEnumNameOrOptions extends { schema: keyof Database }
  ? Database[DefaultSchemaEnumNameOrOptions["schema"]]["Enums"][EnumName]
  : DefaultSchemaEnumNameOrOptions extends keyof DefaultSchema["Enums"]
    ? DefaultSchema["Enums"][DefaultSchemaEnumNameOrOptions]
    : never

export type CompositeTypes<
  PublicCompositeTypeNameOrOptions extends
    | keyof DefaultSchema["CompositeTypes"]
    | { schema: keyof Database },
  CompositeTypeName extends PublicCompositeTypeNameOrOptions extends {
    schema: keyof Database
  }
    ? keyof Database[PublicCompositeTypeNameOrOptions["schema"]]["CompositeTypes"]
    : never = never,
> = PublicCompositeTypeNameOrOptions extends { schema: keyof Database }
  ? Database[PublicCompositeTypeNameOrOptions["schema"]]["CompositeTypes"][CompositeTypeName]
  : PublicCompositeTypeNameOrOptions extends keyof DefaultSchema["CompositeTypes"]
    ? DefaultSchema["CompositeTypes"][PublicCompositeTypeNameOrOptions]
    : never

export const Constants = {
  api: {
    Enums: {},
  },
  public: {
    Enums: {
      mood: ["happy", "sad", "so-so"],
    },
  },
} as const
